"""The API as the benchmarks run it: `python -m app serve` in a process of its own."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def served_api(env: dict[str, str], port: int) -> Iterator[tuple[str, subprocess.Popen]]:
    """An API key, and `python -m app serve` on 127.0.0.1:`port` with `env` added to this
    process's, once `/readiness` answers 200 (every model loaded, so none loads while we
    measure); stopped afterwards."""
    env = {**os.environ, **env}
    key = subprocess.run(
        [sys.executable, "-m", "app", "create-api-key", "--name", "bench"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[-1]
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_ready(f"http://127.0.0.1:{port}", server)
        yield key, server
    finally:
        server.terminate()
        server.wait(60)


def _wait_until_ready(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("the API exited during start-up")
        try:
            if httpx.get(f"{url}/readiness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit("the API did not become ready")
