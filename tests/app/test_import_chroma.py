"""`python -m app import-chroma`: Chroma directories built here with `chromadb` (embeddings
given, so Chroma never loads a model) imported as a tenant's documents, then found through the
API; embeddings kept when they are ours, embedded again by the real embed worker when not;
idempotent; and every refusal one line with nothing written."""

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings as ChromaSettings
from chromadb.utils.embedding_functions import DefaultEmbeddingFunction
from sqlalchemy import text

from app.ingest.chunk import Chunk as TextChunk
from app.services.api_keys import create_api_key
from app.services.chroma_import import (
    ImportRefused,
    import_collection,
    keeps_embeddings,
    read_collection,
)
from app.services.documents import embedding_text
from app.services.embedding import embed_texts
from tests.app.test_cli import run_cli
from tests.conftest import make_settings, start_api

RECORDS = [  # (id, document text, metadata): two documents, chunks in Chroma's order
    ("g1", "Pulumi declares the buckets.", {"source": "guide.md", "title": "Guide", "lang": "en"}),
    (
        "g2",
        "RunPod serves the GPU workers.",
        {"source": "guide.md", "title": "Guide", "lang": "en", "page": 2},
    ),
    ("f1", "Postgres keeps the vectors.", {"source": "faq.md", "lang": "en", "odd key!": "x"}),
]


def unit_vectors(count: int, dim: int, seed: int) -> list[list[float]]:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist()


def chroma_dir(path, dim: int, **collection) -> tuple[str, list[list[float]]]:
    client = chromadb.PersistentClient(str(path), ChromaSettings(anonymized_telemetry=False))
    docs = client.create_collection("docs", **collection)
    vectors = unit_vectors(len(RECORDS), dim, seed=dim)
    ids, texts, metadatas = zip(*RECORDS, strict=True)
    docs.add(ids=list(ids), documents=list(texts), metadatas=list(metadatas), embeddings=vectors)
    return str(path), vectors


@pytest.fixture(scope="module")
async def importer(database_url, local_backend, tmp_path_factory):
    """The API on the real embed worker, and what an import needs from it."""
    settings = make_settings(database_url, storage_dir=tmp_path_factory.mktemp("objects"))
    async for api in start_api(settings, local_backend):
        yield api


async def run(api, path, tenant: str, model: str | None = None, dry_run: bool = False):
    state = api.app.state
    collection = read_collection(path, None, "source")
    keep = keeps_embeddings(collection, state.settings, model)
    summary = await import_collection(
        state.engine,
        state.storage,
        state.backend,
        state.settings,
        collection,
        tenant,
        keep,
        dry_run,
    )
    return collection, keep, summary


async def stored_chunks(api, tenant: str) -> dict[str, list[tuple[str, list[float]]]]:
    query = text(
        "SELECT d.source_id, c.content, c.embedding::text AS embedding FROM documents d "
        "JOIN chunks c ON c.document_id = d.id WHERE d.tenant = :tenant ORDER BY d.source_id, c.ord"
    )
    async with api.app.state.engine.connect() as conn:
        rows = (await conn.execute(query, {"tenant": tenant})).all()
    found: dict[str, list[tuple[str, list[float]]]] = {}
    for row in rows:
        vector = [float(v) for v in row.embedding.strip("[]").split(",")]
        found.setdefault(row.source_id, []).append((row.content, vector))
    return found


async def test_our_models_embeddings_are_kept_and_found_by_search(importer, tmp_path):
    # Chroma's default embedding function is all-MiniLM-L6-v2: the model the API embeds with.
    _, vectors = chroma_dir(tmp_path, 384, embedding_function=DefaultEmbeddingFunction())
    collection, keep, summary = await run(importer, tmp_path, "kept")
    assert (collection.model, keep) == ("all-MiniLM-L6-v2", True)
    assert (summary.documents, summary.chunks, summary.embedded) == (2, 3, 0)
    stored = await stored_chunks(importer, "kept")
    assert [content for content, _ in stored["guide.md"]] == [r[1] for r in RECORDS[:2]]
    assert np.allclose([v for _, v in stored["guide.md"]], vectors[:2], atol=1e-6)
    key = await create_api_key(importer.app.state.sessionmaker, "reader", "kept")
    auth = {"Authorization": f"Bearer {key}"}
    listed = (await importer.client.get("/v1/documents", headers=auth)).json()["items"]
    by_source = {item["source_id"]: item for item in listed}
    assert by_source["guide.md"]["title"] == "Guide"
    shared = {"lang": "en", "source": "guide.md"}  # what both chunks hold alike
    assert by_source["guide.md"]["metadata"] == shared
    assert by_source["faq.md"]["metadata"] == {"lang": "en", "source": "faq.md"}  # no odd key
    hits = (await importer.client.get("/v1/search", params={"q": "vectors"}, headers=auth)).json()
    assert {hit["source_id"] for hit in hits["hits"]} == {"guide.md", "faq.md"}


async def test_other_embeddings_are_made_again_by_the_embed_worker(importer, tmp_path):
    chroma_dir(tmp_path, 8, embedding_function=None)  # 8 dimensions, no model named
    collection, keep, summary = await run(importer, tmp_path, "again")
    assert (collection.model, keep, summary.embedded) == (None, False, 3)
    stored = await stored_chunks(importer, "again")
    texts = [embedding_text("faq.md", TextChunk("", RECORDS[2][1]))]
    [expected] = await embed_texts(
        importer.app.state.backend, importer.app.state.settings, texts, "t"
    )
    [(_, vector)] = stored["faq.md"]
    assert np.allclose(vector, expected, atol=1e-5)


async def test_a_named_model_keeps_them_and_a_second_run_changes_nothing(importer, tmp_path):
    chroma_dir(tmp_path, 384, embedding_function=None)
    _, keep, first = await run(importer, tmp_path, "twice", model="all-MiniLM-L6-v2")
    assert keep and first.documents == 2
    before = await _versions(importer, "twice")
    _, _, second = await run(importer, tmp_path, "twice", model="all-MiniLM-L6-v2")
    assert (second.documents, second.unchanged) == (0, 2)
    assert await _versions(importer, "twice") == before


async def _versions(api, tenant: str) -> list:
    query = text("SELECT id, updated_at, object_key FROM documents WHERE tenant = :t ORDER BY id")
    async with api.app.state.engine.connect() as conn:
        return (await conn.execute(query, {"t": tenant})).all()


async def test_a_dry_run_writes_nothing(importer, tmp_path):
    chroma_dir(tmp_path, 8, embedding_function=None)
    _, _, summary = await run(importer, tmp_path, "dry", dry_run=True)
    assert (summary.documents, summary.chunks) == (2, 3)
    assert await stored_chunks(importer, "dry") == {}
    assert "would import 2 documents" in next(summary.lines(dry_run=True))


def test_refusals_name_what_to_do(tmp_path):
    with pytest.raises(ImportRefused, match="is not a Chroma directory"):
        read_collection(tmp_path, None, "source")
    client = chromadb.PersistentClient(str(tmp_path), ChromaSettings(anonymized_telemetry=False))
    with pytest.raises(ImportRefused, match="holds collections none"):
        read_collection(tmp_path, None, "source")
    for name in ("alpha", "beta"):
        client.create_collection(name, embedding_function=None).add(
            ids=["1"], documents=["x"], embeddings=[[0.0, 1.0]], metadatas=[{"file": "x"}]
        )
    with pytest.raises(
        ImportRefused, match="holds collections alpha, beta: choose one with --collection"
    ):
        read_collection(tmp_path, None, "source")
    with pytest.raises(ImportRefused, match="has no collection 'gamma'; it has alpha, beta"):
        read_collection(tmp_path, "gamma", "source")
    with pytest.raises(ImportRefused, match="1 records of 'alpha' have no text or no 'source'"):
        read_collection(tmp_path, "alpha", "source")
    assert read_collection(tmp_path, "alpha", "file").chunks == 1


def test_the_command_imports_and_says_what_it_did(database_url, tmp_path):
    path, _ = chroma_dir(tmp_path / "chroma", 384, embedding_function=DefaultEmbeddingFunction())
    env = {"DATABASE_URL": database_url, "STORAGE_DIR": str(tmp_path / "objects")}
    done = run_cli("import-chroma", path, "--tenant", "cli", **env)
    assert done.returncode == 0, done.stderr
    assert "embeddings of all-MiniLM-L6-v2 (384 dimensions) kept" in done.stdout
    assert "imported 2 documents (3 chunks; 0 embedded again" in done.stdout
    again = run_cli("import-chroma", path, "--tenant", "cli", **env)
    assert "imported 0 documents" in again.stdout and "2 already up to date" in again.stdout
    missing = run_cli("import-chroma", str(tmp_path / "nowhere"), "--tenant", "cli", **env)
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith("opened on") and "Traceback" not in missing.stderr
