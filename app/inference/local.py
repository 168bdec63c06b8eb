"""The `local` backend: the workers' own `handle(job)` functions, called in-process."""

import asyncio
import importlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from anyio import to_thread

from app.core.config import Settings
from app.core.errors import ApiError, WorkerFailed, WorkerTimeout
from app.inference.base import InferenceBackend, final_output

log = logging.getLogger("tandem.local")

Handler = Callable[[dict[str, Any]], Any]


def load_handler(module_name: str) -> Handler:
    """`handle` of a worker module such as `gpu_worker.dev`."""
    module = importlib.import_module(module_name)
    handler = getattr(module, "handle", None)
    if not callable(handler):
        raise ValueError(f"worker module {module_name} has no handle(job) function")
    return handler


async def _chunks(handler: Handler, job: dict[str, Any]) -> AsyncIterator[Any]:
    """Everything a handler produces for a job, whatever kind of callable it is."""
    if inspect.isasyncgenfunction(handler):
        async for chunk in handler(job):
            yield chunk
    elif inspect.iscoroutinefunction(handler):
        yield await handler(job)
    else:
        yield await to_thread.run_sync(handler, job)


class LocalBackend(InferenceBackend):
    def __init__(self, llm: Handler, clip: Handler, timeout_s: float) -> None:
        self.llm = llm
        self.clip = clip
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> "LocalBackend":
        log.info(
            "local inference backend",
            extra={
                "fields": {"llm": settings.local_llm_worker, "clip": settings.local_clip_worker}
            },
        )
        return cls(
            load_handler(settings.local_llm_worker),
            load_handler(settings.local_clip_worker),
            settings.runpod_timeout_seconds,
        )

    async def _stream(
        self, handler: Handler, job_input: dict[str, Any], request_id: str
    ) -> AsyncIterator[Any]:
        """A handler's chunks, under the deadline, with its failures as API errors."""
        job = {"id": request_id, "input": job_input}
        try:
            async with asyncio.timeout(self.timeout_s):
                async for chunk in _chunks(handler, job):
                    if isinstance(chunk, dict) and "error" in chunk:
                        final_output(chunk)  # raises WorkerFailed with the worker's message
                    yield chunk
        except TimeoutError as exc:
            raise WorkerTimeout(f"the worker did not finish within {self.timeout_s:g} s") from exc
        except ApiError:
            raise
        except Exception as exc:
            log.exception("local worker failed")
            raise WorkerFailed(f"worker error: {exc}") from exc

    async def generate(self, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        return final_output([c async for c in self._stream(self.llm, job_input, request_id)])

    def generate_stream(
        self, job_input: dict[str, Any], request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        return self._stream(self.llm, job_input, request_id)

    async def embed(self, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        return final_output([c async for c in self._stream(self.clip, job_input, request_id)])
