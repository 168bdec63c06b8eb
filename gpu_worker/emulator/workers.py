"""Worker processes running a module under the runpod SDK's job loop, and the pool that scales
an endpoint's workers as RunPod does."""

import asyncio
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpu_worker.emulator.jobs import Endpoint

log = logging.getLogger("tandem.emulator")
RESTART_DELAY_S = 1.0


def worker_env(base_url: str, endpoint: str, worker_id: str) -> dict[str, str]:
    """The variables RunPod sets in a worker container, pointed at the emulator."""
    prefix = f"{base_url}/v2/{endpoint}"
    return {
        "RUNPOD_DEBUG_LEVEL": "INFO",
        **os.environ,
        "RUNPOD_POD_ID": worker_id,
        "RUNPOD_ENDPOINT_ID": endpoint,
        "RUNPOD_WEBHOOK_GET_JOB": f"{prefix}/job-take/$ID?gpu=emulator",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{prefix}/job-done/$RUNPOD_POD_ID/$ID?gpu=emulator",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{prefix}/job-stream/$RUNPOD_POD_ID/$ID?gpu=emulator",
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
    }


class WorkerProcess:
    """Keeps one worker process running (restarting it if it dies) until stopped."""

    def __init__(
        self, module: str, env: dict[str, str], on_exit: Callable[[], None] = lambda: None
    ) -> None:
        self.module = module
        self.env = env
        self.on_exit = on_exit  # called when the process exits on its own, before its restart
        self.process: subprocess.Popen | None = None
        self.stopping = False
        self._supervisor: asyncio.Task | None = None
        self._workdirs: list[str] = []

    def _spawn(self) -> None:
        # The runpod SDK keeps its in-progress jobs in ./.runpod_jobs.pkl: each process gets a
        # fresh working directory, as a fresh container would, so no ghost job carries over.
        workdir = tempfile.mkdtemp(prefix=f"{self.env['RUNPOD_POD_ID']}-")
        self._workdirs.append(workdir)
        env = {
            **self.env,
            "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), self.env.get("PYTHONPATH")])),
        }
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", self.module], env=env, cwd=workdir
        )
        log.info("worker %s started (pid %d)", self.env["RUNPOD_POD_ID"], self.process.pid)

    async def _supervise(self) -> None:
        while True:
            assert self.process is not None
            code = await asyncio.to_thread(self.process.wait)
            if self.stopping:
                return
            log.warning("worker %s exited with %s; restarting", self.env["RUNPOD_POD_ID"], code)
            self.on_exit()
            await asyncio.sleep(RESTART_DELAY_S)
            self._spawn()

    def start(self) -> None:
        self._spawn()
        self._supervisor = asyncio.create_task(self._supervise())

    def terminate(self) -> None:
        """Ask the worker to exit (SIGTERM); it will not be restarted."""
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Terminate the worker and wait for it, killing it after `grace_s`."""
        self.terminate()
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self.process is None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(self.process.wait), grace_s)
        except TimeoutError:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
        for workdir in self._workdirs:
            shutil.rmtree(workdir, ignore_errors=True)


class Pool:
    """One endpoint's workers, scaled as RunPod scales serverless workers: `workers_min` always
    running, one per queued or running job up to `workers_max`, and a worker without a job for
    `idle_timeout_s` stopped (never below `workers_min`). With no module (an image the emulator
    cannot map), workers are wanted but never become ready, as with an image RunPod cannot
    pull. A change of module or env replaces every worker, as a new template release does."""

    def __init__(self, queue: "Endpoint", base_url: str) -> None:
        self.queue = queue
        self.base_url = base_url
        self.module: str | None = None
        self.env: dict[str, str] = {}
        self.workers_min, self.workers_max, self.idle_timeout_s = 0, 0, 5.0
        self.workers: dict[str, WorkerProcess] = {}
        self.wanted = 0
        self._idle_since: dict[str, float] = {}
        self._serial = 0
        self._stopping: set[asyncio.Task] = set()

    def configure(
        self,
        module: str | None,
        env: dict[str, str],
        workers_min: int,
        workers_max: int,
        idle_timeout_s: float = math.inf,
    ) -> None:
        if (module, env) != (self.module, self.env):
            for worker_id in list(self.workers):
                self._stop(worker_id)
        self.module, self.env = module, dict(env)
        self.workers_min, self.workers_max = workers_min, workers_max
        self.idle_timeout_s = idle_timeout_s

    def scale(self) -> None:
        """One step of the scaler: start the workers wanted, stop the idle ones not wanted."""
        now = time.monotonic()
        busy = self.queue.busy_workers()
        demand = len(self.queue.queue) + len(busy & set(self.workers))
        self.wanted = min(self.workers_max, max(self.workers_min, demand))
        for worker_id in list(self.workers):
            if worker_id in busy:
                self._idle_since.pop(worker_id, None)
                continue
            idle_s = now - self._idle_since.setdefault(worker_id, now)
            surplus = len(self.workers) > max(self.wanted, self.workers_min)
            if len(self.workers) > self.workers_max or (surplus and idle_s >= self.idle_timeout_s):
                self._stop(worker_id)
        while self.module is not None and len(self.workers) < self.wanted:
            self._start()

    def health(self) -> dict[str, int]:
        """The `workers` part of RunPod's /health: a worker is ready once it has asked for a job."""
        ready = set(self.workers) & set(self.queue.workers_seen)
        running = ready & self.queue.busy_workers()
        return {
            "idle": len(ready - running),
            "running": len(running),
            "initializing": max(self.wanted, len(self.workers)) - len(ready),
        }

    def _start(self) -> None:
        worker_id = f"{self.queue.name}-worker-{self._serial}"
        self._serial += 1
        env = {**worker_env(self.base_url, self.queue.name, worker_id), **self.env}
        worker = WorkerProcess(
            self.module or "", env, on_exit=lambda: self.queue.worker_lost(worker_id)
        )
        worker.start()
        self.workers[worker_id] = worker

    def _stop(self, worker_id: str) -> None:
        worker = self.workers.pop(worker_id)
        self._idle_since.pop(worker_id, None)
        self.queue.workers_seen.pop(worker_id, None)
        task = asyncio.get_running_loop().create_task(worker.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        for worker_id in list(self.workers):
            self._stop(worker_id)
        await asyncio.gather(*self._stopping)

    def terminate(self) -> None:
        """Ask every worker to exit now (the server is shutting down)."""
        for worker in self.workers.values():
            worker.terminate()
