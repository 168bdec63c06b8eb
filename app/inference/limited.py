"""One tenant's view of the inference backend: at most TENANT_CONCURRENCY[worker type] of its
requests in flight on each worker type at once on this API instance (past it, 429 with
Retry-After), so that one tenant cannot hold every GPU worker; and the caps on what one OpenAI
request may ask of a worker (`check_openai_body`)."""

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from app.core.config import Settings
from app.core.errors import OpenAIError, RateLimited
from app.inference.base import InferenceBackend, QueuedJob

RETRY_AFTER_S = 1


class TenantSlots:
    """The requests each tenant has in flight on each worker type, on this instance."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self.busy: Counter[tuple[str, str]] = Counter()

    @contextlib.contextmanager
    def hold(self, tenant: str, worker: str) -> Iterator[None]:
        limit, key = self.limits.get(worker), (tenant, worker)
        if limit is not None and self.busy[key] >= limit:
            raise RateLimited(
                f"{limit} {worker} requests of this tenant are in flight, the most allowed "
                "(TENANT_CONCURRENCY); send the next when one has finished",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.busy[key] += 1
        try:
            yield
        finally:
            self.busy[key] -= 1
            if not self.busy[key]:
                del self.busy[key]


class TenantBackend(InferenceBackend):
    """`backend` as `tenant` may use it: its synchronous requests hold a slot of theirs."""

    def __init__(self, backend: InferenceBackend, slots: TenantSlots, tenant: str) -> None:
        self.backend, self.slots, self.tenant = backend, slots, tenant

    async def generate(self, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        with self.slots.hold(self.tenant, "llm"):
            return await self.backend.generate(job_input, request_id)

    async def generate_stream(
        self, job_input: dict[str, Any], request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        with self.slots.hold(self.tenant, "llm"):
            async for chunk in self.backend.generate_stream(job_input, request_id):
                yield chunk

    async def run(self, worker: str, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        with self.slots.hold(self.tenant, worker):
            return await self.backend.run(worker, job_input, request_id)

    async def openai(
        self, worker: str, route: str, body: dict[str, Any]
    ) -> dict[str, Any] | AsyncIterator[str]:
        held = contextlib.ExitStack()
        held.enter_context(self.slots.hold(self.tenant, worker))
        try:
            answer = await self.backend.openai(worker, route, body)
        except BaseException:
            held.close()
            raise
        if isinstance(answer, dict):
            held.close()
            return answer
        return _releasing(answer, held)

    async def models(self) -> list[dict[str, Any]]:
        return await self.backend.models()

    async def submit(self, worker: str, job_input: dict[str, Any], webhook: str | None) -> str:
        return await self.backend.submit(worker, job_input, webhook)

    async def job_state(self, worker: str, job_id: str) -> QueuedJob:
        return await self.backend.job_state(worker, job_id)


async def _releasing(events: AsyncIterator[str], held: contextlib.ExitStack) -> AsyncIterator[str]:
    """A stream's events; its slot is given back when it ends, however it ends."""
    with held:
        async for event in events:
            yield event


def check_openai_body(body: dict[str, Any], settings: Settings) -> None:
    """A 400 naming the field when an OpenAI request asks more of a worker than this API
    allows (vLLM itself takes `n` up to 16384): choices (MAX_N), tokens to generate
    (MAX_OUTPUT_TOKENS), prompts or inputs in one list (MAX_INPUT_ITEMS)."""
    caps = {
        "n": ("MAX_N", settings.max_n),
        "best_of": ("MAX_N", settings.max_n),
        "max_tokens": ("MAX_OUTPUT_TOKENS", settings.max_output_tokens),
        "max_completion_tokens": ("MAX_OUTPUT_TOKENS", settings.max_output_tokens),
    }
    for field, (setting, cap) in caps.items():
        value = body.get(field)
        if isinstance(value, int | float) and value > cap:
            raise OpenAIError(
                400, f"{field}: {value} is over this API's cap of {cap} ({setting})", field
            )
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, list) and len(value) > settings.max_input_items:
            raise OpenAIError(
                400,
                f"{field}: {len(value)} items are over this API's cap of "
                f"{settings.max_input_items} (MAX_INPUT_ITEMS)",
                field,
            )
