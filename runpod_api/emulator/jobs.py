"""The emulator's job queue: RunPod's job states for one endpoint, held in memory.

Every change bumps a generation and wakes the long-polls waiting on it (`wait_for_change`).
Everything runs on one event loop, so no locks are needed.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("emulator")

IN_QUEUE, IN_PROGRESS = "IN_QUEUE", "IN_PROGRESS"
COMPLETED, FAILED, CANCELLED, TIMED_OUT = "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"
FINAL = {COMPLETED, FAILED, CANCELLED, TIMED_OUT}
RETRYABLE = {FAILED, CANCELLED, TIMED_OUT}
# How long RunPod keeps results: 30 min after /run, 1 min after /runsync.
RETENTION_S = {"run": 1800.0, "runsync": 60.0}
# A /run job's `webhook` gets the final status; RunPod retries twice, 10 s apart, unless 200.
WEBHOOK_ATTEMPTS, WEBHOOK_RETRY_S = 3, 10.0


@dataclass
class Job:
    id: str
    input: Any
    source: str  # "run" or "runsync"
    execution_timeout_s: float | None
    webhook: str | None = None
    status: str = IN_QUEUE
    output: Any = None
    error: Any = None
    worker_id: str | None = None
    stream: list[Any] = field(default_factory=list)
    stream_sent: int = 0
    lost_workers: int = 0  # how many workers exited while holding it
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None

    def view(self) -> dict[str, Any]:
        """The job as RunPod's /status answers it."""
        now = time.monotonic()
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "delayTime": round(((self.started or now) - self.created) * 1000),
        }
        if self.started is not None:
            body["executionTime"] = round(((self.finished or now) - self.started) * 1000)
            body["workerId"] = self.worker_id
        if self.status == COMPLETED:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


class Endpoint:
    """One serverless endpoint: its queue, its jobs, and the stop signals for its workers."""

    def __init__(self, name: str, execution_timeout_s: float | None = None) -> None:
        self.name = name
        self.execution_timeout_s = execution_timeout_s
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.to_stop: dict[str, set[str]] = {}  # worker id -> job ids it must stop
        self.workers_seen: dict[str, float] = {}
        self.counts = {"completed": 0, "failed": 0, "retried": 0}
        self._changed = asyncio.Event()
        self._deliveries: set[asyncio.Task] = set()

    # -- waiting --------------------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    async def wait_until(self, ready: Any, timeout_s: float) -> bool:
        """Wait until `ready()` is true or the timeout ends; return whether it became true."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await self.wait_for_change(remaining)
        return True

    # -- the public API -------------------------------------------------------------------
    def submit(
        self,
        job_input: Any,
        source: str,
        execution_timeout_ms: int | None,
        webhook: str | None = None,
    ) -> Job:
        self._purge_expired()
        timeout_s = (
            execution_timeout_ms / 1000 if execution_timeout_ms else self.execution_timeout_s
        )
        job = Job(
            id=f"{uuid.uuid4()}-e1",
            input=job_input,
            source=source,
            execution_timeout_s=timeout_s,
            webhook=webhook,
        )
        self.jobs[job.id] = job
        self.queue.append(job.id)
        self._notify()
        return job

    def cancel(self, job: Job) -> None:
        if job.status == IN_QUEUE:
            self.queue.remove(job.id)
            self._finish(job, CANCELLED)
        elif job.status == IN_PROGRESS:
            self._stop_on_worker(job)
            self._finish(job, CANCELLED)

    def retry(self, job: Job) -> bool:
        if job.status not in RETRYABLE:
            return False
        job.output, job.error, job.finished = None, None, None
        self._requeue(job, front=False)
        self.counts["retried"] += 1
        self._notify()
        return True

    def purge_queue(self) -> int:
        removed = len(self.queue)
        for job_id in list(self.queue):
            self.jobs.pop(job_id, None)
        self.queue.clear()
        self._notify()
        return removed

    def take_stream(self, job: Job) -> list[Any]:
        chunks = job.stream[job.stream_sent :]
        job.stream_sent = len(job.stream)
        return chunks

    def counts_view(self) -> dict[str, int]:
        """The `jobs` part of RunPod's /health."""
        statuses = [j.status for j in self.jobs.values()]
        return {
            **self.counts,
            "inProgress": statuses.count(IN_PROGRESS),
            "inQueue": statuses.count(IN_QUEUE),
        }

    def busy_workers(self) -> set[str]:
        return {j.worker_id for j in self.jobs.values() if j.status == IN_PROGRESS and j.worker_id}

    # -- the worker side ------------------------------------------------------------------
    def take(self, worker_id: str, count: int) -> list[Job]:
        self.workers_seen[worker_id] = time.monotonic()
        taken: list[Job] = []
        while self.queue and len(taken) < count:
            job = self.jobs[self.queue.popleft()]
            job.status, job.worker_id, job.started = IN_PROGRESS, worker_id, time.monotonic()
            if job.execution_timeout_s:
                asyncio.get_running_loop().call_later(
                    job.execution_timeout_s, self._time_out, job.id, job.started
                )
            taken.append(job)
        if taken:
            self._notify()
        return taken

    def add_stream(self, job_id: str, output: Any) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.status == IN_PROGRESS:
            job.stream.append(output)
            self._notify()

    def done(self, job_id: str, result: dict[str, Any]) -> None:
        """A worker's final report; ignored for a job that was cancelled or timed out."""
        job = self.jobs.get(job_id)
        if job is None or job.status != IN_PROGRESS:
            return
        if result.get("error"):
            job.error = result["error"]
            self._finish(job, FAILED)
        else:
            job.output = result.get("output")
            self._finish(job, COMPLETED)

    def worker_lost(self, worker_id: str) -> None:
        """A worker exited holding jobs (taken by its last poll, or running): each goes back to
        the front of the queue once, and fails if it loses a second worker."""
        for job in self.jobs.values():
            if job.status != IN_PROGRESS or job.worker_id != worker_id:
                continue
            if job.lost_workers:
                job.error = "the worker running the job exited, twice"
                self._finish(job, FAILED)
                continue
            job.lost_workers += 1
            self._requeue(job, front=True)
        self._notify()

    def stop_signals(self, worker_id: str) -> list[str]:
        self.workers_seen[worker_id] = time.monotonic()
        return sorted(self.to_stop.pop(worker_id, set()))

    # -- internals ------------------------------------------------------------------------
    def _requeue(self, job: Job, front: bool) -> None:
        """Queue `job` again, as not yet started on any worker."""
        job.status, job.worker_id, job.started = IN_QUEUE, None, None
        job.stream, job.stream_sent = [], 0
        if front:
            self.queue.appendleft(job.id)
        else:
            self.queue.append(job.id)

    def _finish(self, job: Job, status: str) -> None:
        job.status, job.finished = status, time.monotonic()
        if status == COMPLETED:
            self.counts["completed"] += 1
        elif status == FAILED:
            self.counts["failed"] += 1
        if job.webhook:
            delivery = asyncio.get_running_loop().create_task(_deliver(job.webhook, job.view()))
            self._deliveries.add(delivery)
            delivery.add_done_callback(self._deliveries.discard)
        self._notify()

    def _stop_on_worker(self, job: Job) -> None:
        if job.worker_id is not None:
            self.to_stop.setdefault(job.worker_id, set()).add(job.id)

    def _time_out(self, job_id: str, started: float) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.status == IN_PROGRESS and job.started == started:
            self._stop_on_worker(job)
            job.error = f"job timed out after {job.execution_timeout_s:g} s"
            self._finish(job, TIMED_OUT)

    def _purge_expired(self) -> None:
        now = time.monotonic()
        expired = [
            job_id
            for job_id, job in self.jobs.items()
            if job.finished is not None and now - job.finished > RETENTION_S[job.source]
        ]
        for job_id in expired:
            del self.jobs[job_id]


async def _deliver(url: str, body: dict[str, Any]) -> None:
    """POST a finished job to its webhook, as RunPod does."""
    async with httpx.AsyncClient(timeout=10) as client:
        for attempt in range(WEBHOOK_ATTEMPTS):
            try:
                if (await client.post(url, json=body)).status_code == 200:
                    return
            except httpx.HTTPError as exc:
                log.warning("webhook %s failed: %s", url, type(exc).__name__)
            if attempt < WEBHOOK_ATTEMPTS - 1:
                await asyncio.sleep(WEBHOOK_RETRY_S)
