"""The API under many clients: `--clients` concurrent clients for `--seconds` against the API as
`make dev` runs it (embedded Postgres, the tiny chat model and the packaged MiniLM in-process),
each looping over a mix of chat turns, searches and document uploads. Prints the count of each
status, the latency percentiles of each kind of request, and the API process's memory (RSS) at
the start, halfway and at the end of the run: no 5xx, and memory flat.

    .venv/bin/python bench/load.py [--clients 200] [--seconds 60]
"""

import argparse
import asyncio
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._served import served_api  # noqa: E402

PORT = 8766
URL = f"http://127.0.0.1:{PORT}"
MIX = ("chat", "search", "upload", "chat", "search")  # each client's loop, round and round


async def one(client: httpx.AsyncClient, kind: str, n: int) -> httpx.Response:
    if kind == "chat":
        body = {"user_id": f"user-{n % 50}", "message": f"Question {n}: how do deploys work?"}
        return await client.post("/v1/chat", json=body | {"max_tokens": 16})
    if kind == "search":
        return await client.get("/v1/search", params={"q": f"deploys to Cloud Run {n % 10}"})
    text = f"# Deploys {n}\n\nEvery merge to main deploys dev; tags deploy prod ({n})."
    return await client.post("/v1/documents", json={"source_id": f"load/{n}.md", "text": text})


async def client_loop(
    client: httpx.AsyncClient, index: int, until: float, seen: dict, latencies: dict
) -> None:
    n = index
    while time.monotonic() < until:
        kind = MIX[n % len(MIX)]
        started = time.perf_counter()
        try:
            status = (await one(client, kind, n)).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        latencies[kind].append((time.perf_counter() - started) * 1000)
        seen[(kind, status)] += 1
        n += 1000


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


async def run(key: str, server: psutil.Process, clients: int, seconds: float) -> None:
    seen: dict = collections.Counter()
    latencies: dict = collections.defaultdict(list)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=URL, headers=headers, limits=limits, timeout=120
    ) as client:
        for n in range(20):  # warm-up: a few of each, then memory is measured from here
            await one(client, MIX[n % len(MIX)], -n - 1)
        memory = [rss_mb(server)]
        until = time.monotonic() + seconds
        loops = [client_loop(client, i, until, seen, latencies) for i in range(clients)]
        halfway = asyncio.create_task(asyncio.sleep(seconds / 2))
        running = asyncio.gather(*loops)
        await halfway
        memory.append(rss_mb(server))
        await running
        memory.append(rss_mb(server))
    total = sum(seen.values())
    print(f"{clients} clients for {seconds:.0f} s: {total} requests, {total / seconds:.1f}/s")
    for (kind, status), count in sorted(seen.items(), key=str):
        print(f"  {kind:<7} {status}: {count}")
    for kind, samples in sorted(latencies.items()):
        q = statistics.quantiles(samples, n=100, method="inclusive")
        print(
            f"  {kind:<7} p50 {q[49]:8.1f} ms   p95 {q[94]:8.1f} ms   p99 {q[98]:8.1f} ms"
            f"   (n={len(samples)})"
        )
    errors = sum(
        count
        for (_, status), count in seen.items()
        if not (isinstance(status, int) and status < 500)
    )
    start, middle, end = memory
    print(
        f"API process RSS: start {start:.0f} MiB, halfway {middle:.0f} MiB, end {end:.0f} MiB "
        f"(end/start {end / start:.3f})"
    )
    print(f"5xx or transport errors: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        # make dev's defaults, under a home of its own; a limit the clients stay under
        env = {"TANDEM_HOME": home, "RATE_LIMIT_PER_MINUTE": "10000000"}
        with served_api(env, PORT) as (key, server):
            asyncio.run(run(key, psutil.Process(server.pid), args.clients, args.seconds))


if __name__ == "__main__":
    main()
