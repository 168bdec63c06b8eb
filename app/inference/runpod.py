"""The `runpod` backend: RunPod's serverless job API (`/v2/{endpoint_id}/...`) over httpx.

`runsync` waits server-side; a job still queued or running when that wait ends is polled on
`/status` until the deadline, then cancelled. Only idempotent calls (`status`, `stream`,
`cancel`) are retried: a retried `run` could start the same job twice.
"""

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import anyio
import httpx

from app.core import keys
from app.core.config import Settings
from app.core.errors import ApiError, WorkerFailed, WorkerTimeout, WorkerUnavailable
from app.inference.base import (
    InferenceBackend,
    QueuedJob,
    final_output,
    openai_error,
    worker_error,
)
from gpu_worker.common.signing import signed
from gpu_worker.common.worker_types import WORKER_TYPES

log = logging.getLogger("tandem.runpod")

PENDING = {"IN_QUEUE", "IN_PROGRESS"}
RETRY_STATUSES = {429, 500, 502, 503, 504}
RETRY_ATTEMPTS = 4
RUNSYNC_WAIT_MS = (1_000, 300_000)  # the range RunPod accepts for ?wait=
STARTED = int(time.time())  # the `created` of the models the stack serves
# RunPod's timing of the last job this context ran and waited for: delayTime and executionTime
# (ms), for its usage row (app/inference/limited.py).
runpod_times: ContextVar[tuple[float | None, float | None] | None] = ContextVar(
    "runpod_times", default=None
)


class RunPodClient:
    """Jobs on RunPod endpoints, each bounded by one deadline of `timeout_s`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        # How long one runsync call waits server-side before we poll instead. It ends a
        # second before our deadline, so a job still running then has an id we can cancel.
        wait_s = min(max(timeout_s - 1, RUNSYNC_WAIT_MS[0] / 1000), RUNSYNC_WAIT_MS[1] / 1000)
        self.runsync_wait_ms = int(wait_s * 1000)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(30.0, connect=5.0),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        deadline: float,
        *,
        idempotent: bool,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        read_timeout: float = 30.0,
    ) -> dict[str, Any]:
        attempts = RETRY_ATTEMPTS if idempotent else 1
        for attempt in range(attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimeout(f"no answer from the worker within {self.timeout_s:g} s")
            timeout = httpx.Timeout(min(read_timeout, remaining), connect=min(5.0, remaining))
            last = attempt == attempts - 1
            try:
                response = await self._http.request(
                    method, path, json=json, params=params, timeout=timeout
                )
            except httpx.TimeoutException as exc:
                if last or not idempotent:
                    raise WorkerTimeout(f"RunPod did not answer {method} {path} in time") from exc
            except httpx.TransportError as exc:
                if last:
                    raise WorkerUnavailable(
                        f"cannot reach RunPod at {self._http.base_url}: {type(exc).__name__}"
                    ) from exc
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in RETRY_STATUSES or last:
                    raise _http_error(method, path, response)
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0) * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    async def run_sync(self, endpoint_id: str, job_input: dict[str, Any]) -> Any:
        """Run a job and return its output; polls and finally cancels a job that overruns."""
        deadline = time.monotonic() + self.timeout_s
        job = await self._request(
            "POST",
            f"/{endpoint_id}/runsync",
            deadline,
            idempotent=False,
            json={"input": job_input},
            params={"wait": self.runsync_wait_ms},
            read_timeout=self.runsync_wait_ms / 1000 + 10,
        )
        delay = 0.1
        try:
            while job.get("status") in PENDING:
                if time.monotonic() + delay >= deadline:
                    raise WorkerTimeout(f"the job did not finish within {self.timeout_s:g} s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                job = await self.status(endpoint_id, job["id"], deadline)
        except WorkerTimeout:
            await self.cancel(endpoint_id, job["id"])  # stop paying for an answer nobody waits for
            raise
        runpod_times.set((job.get("delayTime"), job.get("executionTime")))
        return _job_output(job)

    async def run(
        self, endpoint_id: str, job_input: dict[str, Any], webhook: str | None = None
    ) -> str:
        """Queue a job (`/run`) and return its id; RunPod POSTs the finished job to `webhook`."""
        deadline = time.monotonic() + self.timeout_s
        body = {"input": job_input} | ({"webhook": webhook} if webhook else {})
        job = await self._request(
            "POST", f"/{endpoint_id}/run", deadline, idempotent=False, json=body
        )
        return job["id"]

    async def status(
        self, endpoint_id: str, job_id: str, deadline: float | None = None
    ) -> dict[str, Any]:
        """A job's state as `/status` reports it."""
        deadline = deadline if deadline is not None else time.monotonic() + self.timeout_s
        return await self._request(
            "GET", f"/{endpoint_id}/status/{job_id}", deadline, idempotent=True
        )

    async def stream(self, endpoint_id: str, job_input: dict[str, Any]) -> AsyncIterator[Any]:
        """Run a job and yield each streamed chunk as the worker produces it."""
        deadline = time.monotonic() + self.timeout_s
        job_id = await self.run(endpoint_id, job_input)
        finished = False
        try:
            while True:
                update = await self._request(
                    "GET", f"/{endpoint_id}/stream/{job_id}", deadline, idempotent=True
                )
                chunks = update.get("stream") or []
                for chunk in chunks:
                    yield chunk.get("output")
                status = update.get("status")
                if status not in PENDING:
                    finished = True
                    if status != "COMPLETED":
                        _job_output(update)
                    return
                if not chunks:
                    await asyncio.sleep(0.05)
        finally:
            if not finished:  # deadline, error or the caller went away: stop paying for the job
                # Shielded: when the caller went away, its task is being cancelled too.
                with anyio.CancelScope(shield=True):
                    await self.cancel(endpoint_id, job_id)

    async def openai(
        self, endpoint_id: str, route: str, body: dict[str, Any]
    ) -> dict[str, Any] | AsyncIterator[str]:
        """An OpenAI request through the endpoint's passthrough (`/openai/v1/...`): the answer,
        or for `stream` its events as text. Not retried: it may have started the job."""
        method, payload = ("GET", None) if route == "/v1/models" else ("POST", body)
        request = self._http.build_request(
            method, f"/{endpoint_id}/openai{route}", json=payload, timeout=self.timeout_s
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise WorkerTimeout(f"no answer from the worker within {self.timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise WorkerUnavailable(f"cannot reach RunPod: {type(exc).__name__}") from exc
        if response.status_code >= 400 or body.get("stream") is not True:
            await response.aread()
            await response.aclose()
            if response.status_code >= 400:
                raise openai_error(_json(response)) or _http_error(method, route, response)
            return response.json()
        return _text(response)

    async def cancel(self, endpoint_id: str, job_id: str) -> None:
        """Cancel a job, best effort: the caller is already failing for another reason."""
        try:
            await self._request(
                "POST",
                f"/{endpoint_id}/cancel/{job_id}",
                time.monotonic() + 10,
                idempotent=True,
            )
        except (WorkerFailed, WorkerTimeout, WorkerUnavailable) as exc:
            log.warning("could not cancel job %s: %s", job_id, exc.message)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


async def _text(response: httpx.Response) -> AsyncIterator[str]:
    """A streamed answer's text as it arrives; the connection is closed at its end."""
    try:
        async for text in response.aiter_text():
            yield text
    except httpx.HTTPError as exc:
        raise WorkerFailed(f"the worker's stream broke: {type(exc).__name__}") from exc
    finally:
        await response.aclose()


def _job_output(job: dict[str, Any]) -> Any:
    """The output of a finished job, or the error its status means."""
    status = job.get("status")
    if status == "COMPLETED":
        return job.get("output")
    if status == "TIMED_OUT":
        raise WorkerTimeout("the job ran past the endpoint's execution timeout")
    if status == "CANCELLED":
        raise WorkerFailed("the job was cancelled")
    if status == "FAILED":
        raise worker_error(job.get("error", "unknown"))
    raise WorkerFailed(f"RunPod returned an unknown job status: {status!r}")


class JobNotFound(WorkerFailed):
    """RunPod does not know the job (its results are kept 30 minutes after `/run`)."""


def queued_job(job: dict[str, Any]) -> QueuedJob:
    """A job as `/status` (or a webhook) reports it."""
    status = job.get("status")
    if status in PENDING:
        return QueuedJob("pending")
    if status == "COMPLETED":
        finished = QueuedJob.finished(job.get("output"))
        return dataclasses.replace(
            finished, delay_ms=job.get("delayTime"), execution_ms=job.get("executionTime")
        )
    try:
        _job_output(job)  # raises the error the status means
    except ApiError as exc:
        return QueuedJob("failed", error=exc.message)
    raise AssertionError("unreachable")


def _http_error(method: str, path: str, response: httpx.Response) -> Exception:
    detail = response.text[:200]
    if response.status_code == 404 and "/status/" in path:
        return JobNotFound(f"RunPod does not know the job at {path}")
    if response.status_code in RETRY_STATUSES:
        return WorkerUnavailable(f"RunPod answered {response.status_code} to {method} {path}")
    return WorkerFailed(f"RunPod answered {response.status_code} to {method} {path}: {detail}")


class RunPodBackend(InferenceBackend):
    """`endpoints`: each worker type's endpoint id; `signing_key`: the key the jobs of the
    worker types that check signatures are signed with (the workers'), if any."""

    def __init__(
        self,
        client: RunPodClient,
        endpoints: dict[str, str],
        signing_key: str | None = None,
        served: list[str] | None = None,
    ) -> None:
        self.client = client
        self.endpoints = endpoints
        self.signing_key = signing_key
        self.served = served or []  # the chat and text-embedding models, by the stack's config

    @classmethod
    def from_settings(cls, settings: Settings) -> "RunPodBackend":
        api_key = settings.runpod_api_key.get_secret_value() if settings.runpod_api_key else None
        client = RunPodClient(settings.runpod_api_base, api_key, settings.runpod_timeout_seconds)
        served = [settings.llm_model, settings.text_embedding_model or "all-MiniLM-L6-v2"]
        return cls(client, settings.endpoint_ids(), settings.signing_key(keys.WORKERS), served)

    async def models(self) -> list[dict[str, Any]]:
        """The models the stack's config names (LLM_MODEL, TEXT_EMBEDDING_MODEL): asking the
        workers would start a GPU worker for a listing."""
        return [
            {"id": name, "object": "model", "created": STARTED, "owned_by": "tandem"}
            for name in self.served
        ]

    def _signed(self, worker: str, job_input: dict[str, Any]) -> dict[str, Any]:
        if self.signing_key is None or not WORKER_TYPES[worker].signed:
            return job_input
        return signed(self.signing_key, job_input)

    async def generate(self, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await self.run("llm", job_input, request_id)

    async def generate_stream(
        self, job_input: dict[str, Any], request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        async for chunk in self.client.stream(self.endpoints["llm"], job_input):
            if not isinstance(chunk, dict):
                raise WorkerFailed(f"worker streamed an unexpected chunk: {type(chunk).__name__}")
            yield chunk

    async def run(self, worker: str, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        job_input = self._signed(worker, job_input)
        return final_output(await self.client.run_sync(self.endpoints[worker], job_input))

    async def openai(
        self, worker: str, route: str, body: dict[str, Any]
    ) -> dict[str, Any] | AsyncIterator[str]:
        return await self.client.openai(self.endpoints[worker], route, body)

    def endpoint(self, worker: str) -> str:
        return self.endpoints[worker]

    async def submit(self, worker: str, job_input: dict[str, Any], webhook: str | None) -> str:
        return await self.client.run(
            self.endpoints[worker], self._signed(worker, job_input), webhook
        )

    async def job_state(self, worker: str, job_id: str) -> QueuedJob:
        try:
            return queued_job(await self.client.status(self.endpoints[worker], job_id))
        except JobNotFound:
            return QueuedJob("gone")

    async def aclose(self) -> None:
        await self.client.aclose()
