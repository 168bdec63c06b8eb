"""The API under many clients: `--clients` concurrent clients for `--seconds` against the API as
`make dev` runs it (embedded Postgres, the tiny chat model and the packaged MiniLM in-process),
spread over `--tenants` tenants (a key each), each client looping over a mix of chat turns,
OpenAI chat completions, searches, listings and document uploads.

Checked during the run: no tenant ever reads another's ids (every conversation, document and
search hit a tenant is shown must be one it made, or one no tenant made), and every 429 was due:
a key's bucket holds `--limit` tokens and refills `--limit` a minute, so a 429 answered before
the key had sent more than that allowed is a fault. Printed: the count of each status, p50/p95
per kind, and the API process's memory (RSS) at the start, halfway and at the end.

    .venv/bin/python bench/load.py [--clients 200] [--seconds 60] [--tenants 10] [--limit 120]
"""

import argparse
import asyncio
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._served import served_api  # noqa: E402

PORT = 8766
URL = f"http://127.0.0.1:{PORT}"
MIX = ("chat", "search", "openai", "list", "upload", "chat", "search", "list")


@dataclass
class Key:
    """A tenant's key, and when its requests were sent and answered (for the 429 check)."""

    tenant: str
    secret: str
    sent: list[float] = field(default_factory=list)
    answered: list[tuple[float, float, int]] = field(default_factory=list)  # sent, answered


@dataclass
class Run:
    owner: dict[str, str] = field(default_factory=dict)  # id -> the tenant that made it
    seen: collections.Counter = field(default_factory=collections.Counter)
    latencies: dict = field(default_factory=lambda: collections.defaultdict(list))
    leaks: list[str] = field(default_factory=list)

    def check(self, tenant: str, kind: str, ids: list[str]) -> None:
        for id_ in ids:
            if self.owner.get(id_, tenant) != tenant:
                self.leaks.append(f"{tenant} was shown {self.owner[id_]}'s {id_} by {kind}")


async def call(
    client: httpx.AsyncClient, key: Key, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """One HTTP request with `key`, its send and answer times noted on the key."""
    sent = time.monotonic()
    key.sent.append(sent)
    headers = {"Authorization": f"Bearer {key.secret}"}
    response = await client.request(method, path, headers=headers, **kwargs)
    key.answered.append((sent, time.monotonic(), response.status_code))
    return response


async def one(client: httpx.AsyncClient, key: Key, run: Run, kind: str, n: int) -> int:
    """One request of `kind` (a listing: two); what it made is recorded, what it shows is
    checked."""
    user = f"user-{n % 50}"
    if kind == "chat":
        body = {"user_id": user, "message": f"Question {n}: how do deploys work?"}
        response = await call(client, key, "POST", "/v1/chat", json=body | {"max_tokens": 16})
        made = ["conversation_id"]
    elif kind == "openai":
        body = {"messages": [{"role": "user", "content": f"Deploys? ({n})"}], "max_tokens": 16}
        response = await call(client, key, "POST", "/v1/chat/completions", json=body)
        made = []
    elif kind == "upload":
        text = f"# Deploys {n}\n\nEvery merge to main deploys dev; tags deploy prod ({n})."
        body = {"source_id": f"load/{key.tenant}/{n}.md", "text": text}
        response = await call(client, key, "POST", "/v1/documents", json=body)
        made = ["id"]
    elif kind == "search":
        params = {"q": f"deploys to Cloud Run {n % 10}"}
        response = await call(client, key, "GET", "/v1/search", params=params)
        if response.status_code == 200:
            run.check(key.tenant, kind, [h["document_id"] for h in response.json()["hits"]])
        return response.status_code
    else:  # list: the user's conversations, and the tenant's documents
        response = await call(client, key, "GET", f"/v1/users/{user}/conversations")
        if response.status_code == 200:
            ids = [c["id"] for c in response.json()["conversations"]]
            run.check(key.tenant, kind, ids)
            response = await call(client, key, "GET", "/v1/documents")
            if response.status_code == 200:
                run.check(key.tenant, kind, [d["id"] for d in response.json()["items"]])
        return response.status_code
    if response.status_code < 300:
        for name in made:
            run.owner[response.json()[name]] = key.tenant
    return response.status_code


async def client_loop(
    client: httpx.AsyncClient, key: Key, index: int, until: float, run: Run
) -> None:
    n = index
    while time.monotonic() < until:
        kind = MIX[n % len(MIX)]
        started = time.monotonic()
        try:
            status: int | str = await one(client, key, run, kind, n)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        run.latencies[kind].append((time.monotonic() - started) * 1000)
        run.seen[(kind, status)] += 1
        n += 1000


def undue_429s(key: Key, limit: int) -> int:
    """429s answered while the key had surely tokens left: fewer requests sent before the
    answer than the bucket (full at its first request) allowed by the time it was sent."""
    first_answer = min(answered for _, answered, _ in key.answered)
    undue = 0
    for sent, answered, status in key.answered:
        if status != 429:
            continue
        before = sum(1 for t in key.sent if t < answered)
        allowed = limit + limit / 60 * max(0.0, sent - first_answer)
        undue += before <= allowed - 1  # refused takes more than `allowed` (a token of slack)
    return undue


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


async def load(keys: list[Key], server: psutil.Process, args: argparse.Namespace) -> None:
    run = Run()
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=URL, limits=limits, timeout=120) as client:
        for n in range(2 * len(MIX)):  # warm-up: each kind, then memory is measured from here
            await one(client, keys[n % len(keys)], run, MIX[n % len(MIX)], -n - 1)
        memory = [rss_mb(server)]
        until = time.monotonic() + args.seconds
        loops = [
            client_loop(client, keys[i % len(keys)], i, until, run) for i in range(args.clients)
        ]
        running = asyncio.gather(*loops)
        await asyncio.sleep(args.seconds / 2)
        memory.append(rss_mb(server))
        await running
        memory.append(rss_mb(server))
    report(run, keys, memory, args)


def report(run: Run, keys: list[Key], memory: list[float], args: argparse.Namespace) -> None:
    total = sum(run.seen.values())
    print(
        f"{args.clients} clients of {len(keys)} tenants for {args.seconds:.0f} s: {total} "
        f"requests, {total / args.seconds:.1f}/s"
    )
    for (kind, status), count in sorted(run.seen.items(), key=str):
        print(f"  {kind:<7} {status}: {count}")
    for kind, samples in sorted(run.latencies.items()):
        q = statistics.quantiles(samples, n=100, method="inclusive")
        print(f"  {kind:<7} p50 {q[49]:8.1f} ms   p95 {q[94]:8.1f} ms   (n={len(samples)})")
    errors = sum(
        count
        for (_, status), count in run.seen.items()
        if not (isinstance(status, int) and status < 500)
    )
    limited = sum(count for (_, status), count in run.seen.items() if status == 429)
    undue = sum(undue_429s(key, args.limit) for key in keys)
    start, middle, end = memory
    print(
        f"API process RSS: start {start:.0f} MiB, halfway {middle:.0f} MiB, end {end:.0f} MiB "
        f"(end/start {end / start:.3f})"
    )
    print(f"5xx or transport errors: {errors}")
    print(f"429s: {limited} (rate limit {args.limit}/min a key), undue: {undue}")
    print(f"ids of another tenant shown: {len(run.leaks)}")
    for leak in run.leaks[:10]:
        print(f"  {leak}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--limit", type=int, default=120, help="requests a minute, a key")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {"TANDEM_HOME": home, "RATE_LIMIT_PER_MINUTE": str(args.limit)}
        with served_api(env, PORT) as (_key, server):
            keys = [new_key(env, f"tenant-{i}") for i in range(args.tenants)]
            asyncio.run(load(keys, psutil.Process(server.pid), args))


def new_key(env: dict[str, str], tenant: str) -> Key:
    """A key of `tenant`, made by the CLI beside the running API."""
    made = subprocess.run(
        [sys.executable, "-m", "app", "create-api-key", "--name", tenant, "--tenant", tenant],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return Key(tenant, made.stdout.splitlines()[-1])


if __name__ == "__main__":
    main()
