"""Worker processes running a module under the runpod SDK's job loop, and the pool that scales
an endpoint's workers as RunPod does, lists them (`/v2/serverless/{id}/workers`) and bills their
seconds at their GPU's serverless price.

A worker of an endpoint made through the control plane starts with what RunPod gives a
container: the endpoint's env (secret references resolved), RunPod's own variables and what this
machine needs to run Python (MACHINE_VARIABLES, and the CPU settings local mode passes), never
the environment of the process serving the local RunPod. The fixed endpoints of `--endpoint`
stand for endpoints set up elsewhere by whoever starts the local RunPod, and inherit its
environment.
"""

import asyncio
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runpod_api.emulator.jobs import Endpoint

log = logging.getLogger("tandem.emulator")
RESTART_DELAY_S = 1.0
LOG_LINES = 1000  # the last lines of each worker's output kept for /logs
# What a worker process needs from this machine to run Python at all.
MACHINE_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


def worker_env(base_url: str, endpoint: str, worker_id: str, inherit: bool) -> dict[str, str]:
    """The variables RunPod sets in a worker container, pointed at the local RunPod, and the
    machine's: all of this process's with `inherit` (fixed endpoints), else MACHINE_VARIABLES."""
    prefix = f"{base_url}/v2/{endpoint}"
    machine = (
        dict(os.environ)
        if inherit
        else {key: os.environ[key] for key in MACHINE_VARIABLES if key in os.environ}
    )
    return {
        "RUNPOD_DEBUG_LEVEL": "INFO",
        **machine,
        "RUNPOD_POD_ID": worker_id,
        "RUNPOD_ENDPOINT_ID": endpoint,
        "RUNPOD_WEBHOOK_GET_JOB": f"{prefix}/job-take/$ID?gpu=emulator",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{prefix}/job-done/$RUNPOD_POD_ID/$ID?gpu=emulator",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{prefix}/job-stream/$RUNPOD_POD_ID/$ID?gpu=emulator",
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
    }


class WorkerProcess:
    """Keeps one worker process running (restarting it if it dies) until stopped; its output
    goes to this process's stderr and, its last LOG_LINES lines, to `logs`."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        version: int,
        gpu: dict[str, Any] | None,
        on_exit: Callable[[], None] = lambda: None,
    ) -> None:
        self.module = module
        self.env = env
        self.version = version
        self.gpu = gpu  # the catalog's GPU type it was placed on
        self.on_exit = on_exit  # called when the process exits on its own, before its restart
        self.process: subprocess.Popen | None = None
        self.stopping = False
        self.exits = 0  # how often it exited on its own
        self.placed = time.monotonic()  # billed from here, through its restarts
        self.started = self.placed  # RunPod's startedAt and uptime: since its last start
        self.started_at = _now()
        self.logs: deque[tuple[str, str]] = deque(maxlen=LOG_LINES)  # (timestamp, line)
        self._supervisor: asyncio.Task | None = None
        self._workdirs: list[str] = []

    def _spawn(self) -> None:
        self.started, self.started_at = time.monotonic(), _now()
        # The runpod SDK keeps its in-progress jobs in ./.runpod_jobs.pkl: each process gets a
        # fresh working directory, as a fresh container would, so no ghost job carries over.
        workdir = tempfile.mkdtemp(prefix=f"{self.env['RUNPOD_POD_ID']}-")
        self._workdirs.append(workdir)
        env = {
            **self.env,
            "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), self.env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",  # as the worker images set it: lines reach the log at once
        }
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", self.module],
            env=env,
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._relay, args=(self.process,), daemon=True).start()
        log.info("worker %s started (pid %d)", self.env["RUNPOD_POD_ID"], self.process.pid)

    def _relay(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            sys.stderr.buffer.write(raw)
            sys.stderr.flush()
            stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            self.logs.append((stamp, raw.decode(errors="replace").rstrip("\n")))

    async def _supervise(self) -> None:
        while True:
            assert self.process is not None
            code = await asyncio.to_thread(self.process.wait)
            if self.stopping:
                return
            log.warning("worker %s exited with %s; restarting", self.env["RUNPOD_POD_ID"], code)
            self.exits += 1
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
    `idle_timeout_s` stopped (never below `workers_min`). With no module (an image the local
    RunPod cannot map or pull), workers are wanted but never become ready; with no GPU placed
    (no capacity in the endpoint's pools) they are wanted and throttled, never started. A change
    of module or env is a new version: the workers of the old one are stopped (listed as stale
    until they have exited) and new ones started. Each worker's seconds are billed at its GPU's
    serverless price."""

    def __init__(self, queue: "Endpoint", base_url: str, inherit_env: bool) -> None:
        self.queue = queue
        self.base_url = base_url
        self.inherit_env = inherit_env
        self.module: str | None = None
        self.env: dict[str, str] = {}
        self.version = 0
        self.gpu: dict[str, Any] | None = None
        self.workers_min, self.workers_max, self.idle_timeout_s = 0, 0, 5.0
        self.workers: dict[str, WorkerProcess] = {}
        self.stale: dict[str, WorkerProcess] = {}  # stopping, of an older version
        self.wanted = 0
        self.billed_usd = 0.0  # for the seconds of workers that have stopped
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
        gpu: dict[str, Any] | None = None,
    ) -> None:
        """(Re)configure; `gpu`: the catalog's GPU type new workers are placed on (None: no
        capacity)."""
        if (module, env) != (self.module, self.env) or self.version == 0:
            self.version += 1
            for worker_id in list(self.workers):
                self._stop(worker_id)
        self.module, self.env, self.gpu = module, dict(env), gpu
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
        while self.module is not None and self.gpu is not None and len(self.workers) < self.wanted:
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

    def listing(self) -> dict[str, Any]:
        """The workers as `/v2/serverless/{id}/workers` lists them, with their summary."""
        busy = self.queue.busy_workers()
        now = time.monotonic()
        listed: list[dict[str, Any]] = []
        for worker_id, worker in [*self.workers.items(), *self.stale.items()]:
            if worker_id in busy:
                status = "RUNNING"
            elif worker_id in self.queue.workers_seen:
                status = "IDLE"
            else:  # started, not serving yet; one that keeps exiting is unhealthy
                status = "UNHEALTHY" if worker.exits else "INITIALIZING"
            listed.append(
                {
                    "id": worker_id,
                    "status": status,
                    "isStale": worker.version != self.version,
                    "version": worker.version,
                    "gpuCount": 1,
                    "image": None,
                    "uptimeSeconds": round(now - worker.started),
                    "gpuTypeId": worker.gpu["id"] if worker.gpu else None,
                    "dataCenterId": "LOCAL" if worker.gpu else None,
                    "startedAt": worker.started_at,
                }
            )
        if self.gpu is None and self.module is not None:  # wanted, waiting for capacity
            for n in range(self.wanted - len(self.workers)):
                listed.append(
                    {
                        "id": f"{self.queue.name}-throttled-{n}",
                        "status": "THROTTLED",
                        "isStale": False,
                        "version": self.version,
                        "gpuCount": 1,
                        "gpuTypeId": None,
                        "dataCenterId": None,
                    }
                )
        summary = {key: 0 for key in ("running", "idle", "initializing", "throttled", "unhealthy")}
        for entry in listed:
            summary[entry["status"].lower()] += 1
        return {
            "endpointVersion": self.version,
            "summary": summary | {"total": len(listed)},
            "workers": listed,
        }

    def worker(self, worker_id: str) -> WorkerProcess | None:
        return self.workers.get(worker_id) or self.stale.get(worker_id)

    def billed(self) -> float:
        """USD so far: stopped workers' and the running ones' seconds at their GPU's price."""
        now = time.monotonic()
        running = sum(
            (now - worker.placed) * _price_per_s(worker.gpu)
            for worker in [*self.workers.values(), *self.stale.values()]
        )
        return self.billed_usd + running

    def _start(self) -> None:
        worker_id = f"{self.queue.name}-worker-{self._serial}"
        self._serial += 1
        env = worker_env(self.base_url, self.queue.name, worker_id, self.inherit_env) | self.env
        worker = WorkerProcess(
            self.module or "",
            env,
            self.version,
            self.gpu,
            on_exit=lambda: self.queue.worker_lost(worker_id),
        )
        worker.start()
        self.workers[worker_id] = worker

    def _stop(self, worker_id: str) -> None:
        worker = self.workers.pop(worker_id)
        self.stale[worker_id] = worker
        self._idle_since.pop(worker_id, None)
        self.queue.workers_seen.pop(worker_id, None)

        async def stop() -> None:
            await worker.stop()
            self.stale.pop(worker_id, None)
            self.billed_usd += (time.monotonic() - worker.placed) * _price_per_s(worker.gpu)

        task = asyncio.get_running_loop().create_task(stop())
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


def _price_per_s(gpu: dict[str, Any] | None) -> float:
    """A GPU's serverless price per second (the catalog's is per hour); 0 where unknown."""
    return ((gpu or {}).get("price", {}).get("serverless") or 0.0) / 3600


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
