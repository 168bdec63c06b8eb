"""The `local` backend: the workers' own handlers, run in-process.

The workers are built and their models loaded in the background when the app starts
(importing vLLM and starting its engine take tens of seconds on a CPU), one after the other in
the order of gpu_worker.common.worker_types (chat first). `/health` answers at once,
`/readiness` says which are still loading, and a job waits for its model under the same
deadline as any job.
"""

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from app.core.config import Settings
from app.core.errors import ApiError, WorkerFailed, WorkerTimeout, WorkerUnavailable
from app.inference.base import InferenceBackend, QueuedJob, final_output
from gpu_worker.common.worker_types import WORKER_TYPES

log = logging.getLogger("tandem.local")
T = TypeVar("T")


class Worker(Protocol):
    """What the backend needs of a worker (each worker type's, e.g. gpu_worker's ClipWorker)."""

    def handle(self, job: dict[str, Any]) -> Any: ...
    def load(self) -> None: ...
    def shutdown(self) -> None: ...


async def _in_daemon_thread(work: Callable[[], T]) -> T:
    """`work()`, run in a daemon thread: a model still loading when the app stops does not
    hold up its exit (an executor thread would be joined first)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if done.done():  # cancelled: the app is stopping
            return
        if exc is None:
            done.set_result(result)
        else:
            done.set_exception(exc)

    def run() -> None:
        result, outcome = None, None
        try:
            result = work()
        except BaseException as exc:
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(settle, result, outcome)

    threading.Thread(target=run, name="tandem-model-load", daemon=True).start()
    return await done


def _loaded_worker(make: Callable[[], Worker]) -> Worker:
    worker = make()
    worker.load()
    return worker


async def _chunks(handler: Any, job: dict[str, Any]) -> AsyncIterator[Any]:
    """Everything a handler produces for a job: an async generator's items or a coroutine's
    result (the two kinds the runpod SDK runs)."""
    if inspect.isasyncgenfunction(handler):
        async for chunk in handler(job):
            yield chunk
    else:
        yield await handler(job)


async def _then(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


class LocalBackend(InferenceBackend):
    """`makers` builds each worker (by worker type); `workers` holds the loaded ones."""

    def __init__(self, makers: dict[str, Callable[[], Worker]], timeout_s: float) -> None:
        self.makers = makers
        self.workers: dict[str, Worker] = {}
        self.timeout_s = timeout_s
        self._loaded: dict[str, asyncio.Future[None]] = {}
        self._loader: asyncio.Task | None = None
        self._queued: dict[str, asyncio.Task] = {}  # submitted jobs, until their end is read

    @classmethod
    def from_settings(cls, settings: Settings) -> "LocalBackend":
        from app.inference.local_models import local_workers

        return cls(local_workers(settings), settings.runpod_timeout_seconds)

    async def start(self) -> None:
        """Begin loading every model in the background (once)."""
        if self._loader is None:
            loop = asyncio.get_running_loop()
            self._loaded = {name: loop.create_future() for name in self.makers}
            self._loader = asyncio.create_task(self._load_all())

    async def _load_all(self) -> None:
        for name in sorted(self.makers, key=list(WORKER_TYPES).index):
            try:
                make = functools.partial(_loaded_worker, self.makers[name])
                self.workers[name] = await _in_daemon_thread(make)
            except Exception as exc:
                log.exception("the %s model failed to load", WORKER_TYPES[name].description)
                self._loaded[name].set_exception(
                    WorkerUnavailable(
                        f"the {WORKER_TYPES[name].description} model failed to load: {exc}"
                    )
                )
            else:
                log.info("the %s model is loaded", WORKER_TYPES[name].description)
                self._loaded[name].set_result(None)

    async def wait_loaded(self) -> None:
        """Start loading if needed and wait until every model has loaded or failed."""
        await self.start()
        await asyncio.gather(*self._loaded.values(), return_exceptions=True)

    def checks(self) -> dict[str, str]:
        def state(future: asyncio.Future | None) -> str:
            if future is None or not future.done():
                return "loading"
            return "ready" if future.exception() is None else "failed"

        return {f"{name}_model": state(self._loaded.get(name)) for name in self.makers}

    async def _stream(
        self, name: str, job_input: dict[str, Any], request_id: str
    ) -> AsyncIterator[Any]:
        """A worker's chunks, under the deadline, with its failures as API errors."""
        await self.start()
        job = {"id": request_id, "input": job_input}
        loading = True
        try:
            async with asyncio.timeout(self.timeout_s):
                await asyncio.shield(self._loaded[name])
                loading = False
                async for chunk in _chunks(self.workers[name].handle, job):
                    if isinstance(chunk, dict) and "error" in chunk:
                        final_output(chunk)  # raises the worker's error as the API's
                    yield chunk
        except TimeoutError as exc:
            if loading:
                what = WORKER_TYPES[name].description
                message = f"the {what} model is still loading; try again shortly"
                raise WorkerUnavailable(message) from exc
            raise WorkerTimeout(f"the worker did not finish within {self.timeout_s:g} s") from exc
        except ApiError:
            raise
        except Exception as exc:
            log.exception("local worker failed")
            raise WorkerFailed(f"worker error: {exc}") from exc

    async def generate(self, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await self.run("llm", job_input, request_id)

    def generate_stream(
        self, job_input: dict[str, Any], request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        return self._stream("llm", job_input, request_id)

    async def run(self, worker: str, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        return final_output([c async for c in self._stream(worker, job_input, request_id)])

    async def openai(
        self, worker: str, route: str, body: dict[str, Any]
    ) -> dict[str, Any] | AsyncIterator[str]:
        chunks = self._stream(worker, {"openai_route": route, "openai_input": body}, "openai")
        if body.get("stream") is not True:
            return final_output([chunk async for chunk in chunks])
        first = await anext(chunks)  # an error before the stream starts is the answer's status
        return _then(first, chunks)

    async def submit(self, worker: str, job_input: dict[str, Any], webhook: str | None) -> str:
        """Run the job in a task of this process; `webhook` is not called (nothing listens on a
        public address locally): the API polls `job_state`."""
        job_id = f"local-{uuid.uuid4()}"
        self._queued[job_id] = asyncio.create_task(self.run(worker, job_input, job_id))
        return job_id

    async def job_state(self, worker: str, job_id: str) -> QueuedJob:
        task = self._queued.get(job_id)
        if task is None:
            return QueuedJob("gone")
        if not task.done():
            return QueuedJob("pending")
        del self._queued[job_id]
        if (error := task.exception()) is not None:  # any failure fails the job, never the poller
            message = error.message if isinstance(error, ApiError) else f"worker error: {error}"
            return QueuedJob("failed", error=message)
        return QueuedJob.finished(task.result())

    async def aclose(self) -> None:
        """Stop loading and free every loaded model (one still loading dies with the process)."""
        tasks = [*self._queued.values(), *([self._loader] if self._loader else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in self.workers.values():
            await asyncio.to_thread(worker.shutdown)
