"""Worker processes: one per endpoint, each running its module under the runpod SDK's job loop."""

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile

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

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.module = module
        self.env = env
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
