"""One tenant's view of the inference backend: at most TENANT_CONCURRENCY[worker type] of its
requests in flight on each worker type at once on this API instance (past it, 429 with
Retry-After), so that one tenant cannot hold every GPU worker; every answer metered
(app/services/usage.py); and the caps on what one OpenAI request may ask of a worker
(`check_openai_body`)."""

import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from app.core.config import Settings
from app.core.errors import OpenAIError, RateLimited
from app.inference.base import InferenceBackend, QueuedJob
from app.inference.runpod import runpod_times
from app.services.usage import Charge, Meter

if TYPE_CHECKING:
    from app.services.deployment_runner import Deployed

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
    """`backend` as `tenant` may use it: its synchronous requests hold a slot of theirs, and
    each answer a worker gives is metered (`meter`, priced by `charge`: None, the stack's
    workers at their GPUs' prices)."""

    def __init__(
        self,
        backend: InferenceBackend,
        slots: TenantSlots,
        meter: Meter,
        charge: Charge | None = None,
    ) -> None:
        self.backend, self.slots, self.meter, self.charge = backend, slots, meter, charge
        self.tenant = meter.tenant

    def via(self, deployed: "Deployed") -> "TenantBackend":
        """This tenant's use of one of its deployments, priced and billed as that one is."""
        return TenantBackend(deployed.backend, self.slots, self.meter, deployed.charge)

    def _metered(self, worker: str, result: dict[str, Any], started: float) -> None:
        charge = self.charge or self.meter.stack_charge(worker)
        timed = runpod_times.get() or (None, None)
        self.meter.add(worker, self.backend.endpoint(worker), charge, result, started, timed)

    async def _answered(
        self, worker: str, answer: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        with self.slots.hold(self.tenant, worker):
            started = time.perf_counter()
            runpod_times.set(None)
            result = await answer()
            self._metered(worker, result, started)
            return result

    async def generate(self, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await self._answered("llm", lambda: self.backend.generate(job_input, request_id))

    async def generate_stream(
        self, job_input: dict[str, Any], request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        with self.slots.hold(self.tenant, "llm"):
            started, last = time.perf_counter(), None
            try:
                async for chunk in self.backend.generate_stream(job_input, request_id):
                    last = chunk
                    yield chunk
            finally:  # also a stream its client left: the worker ran until then
                if last is not None:
                    self._metered("llm", last, started)

    async def run(self, worker: str, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await self._answered(worker, lambda: self.backend.run(worker, job_input, request_id))

    async def openai(
        self, worker: str, route: str, body: dict[str, Any]
    ) -> dict[str, Any] | AsyncIterator[str]:
        held = contextlib.ExitStack()
        held.enter_context(self.slots.hold(self.tenant, worker))
        started = time.perf_counter()
        try:
            answer = await self.backend.openai(worker, route, body)
        except BaseException:
            held.close()
            raise
        if isinstance(answer, dict):
            held.close()
            self._metered(worker, answer, started)
            return answer
        return self._streamed(worker, answer, held, started)

    async def _streamed(
        self, worker: str, events: AsyncIterator[str], held: contextlib.ExitStack, started: float
    ) -> AsyncIterator[str]:
        """A stream's events; its slot is given back when it ends, however it ends, and its
        usage metered (the tokens its last usage chunk counts, when one arrives whole in a
        piece of text)."""
        seen: dict[str, Any] | None = None
        with held:
            try:
                async for event in events:
                    seen = seen or {}
                    if '"usage":{' in event or '"usage": {' in event:
                        seen.update(_stream_usage(event))
                    yield event
            finally:  # also a stream its client left: the worker ran until then
                if seen is not None:
                    self._metered(worker, seen, started)

    async def models(self) -> list[dict[str, Any]]:
        return await self.backend.models()

    async def submit(self, worker: str, job_input: dict[str, Any], webhook: str | None) -> str:
        return await self.backend.submit(worker, job_input, webhook)

    async def job_state(self, worker: str, job_id: str) -> QueuedJob:
        return await self.backend.job_state(worker, job_id)


def _stream_usage(text: str) -> dict[str, Any]:
    """The usage and model of the last event in `text` (OpenAI's SSE) that counts tokens."""
    found: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith("data: {"):
            with contextlib.suppress(ValueError):
                chunk = json.loads(line.removeprefix("data: "))
                if isinstance(chunk.get("usage"), dict):
                    found = {"usage": chunk["usage"], "model": chunk.get("model")}
    return found


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
