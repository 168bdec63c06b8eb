"""From Chroma: a persistent Chroma directory's collection imported as a tenant's documents.

Chunks are grouped into documents by a metadata field (each document's chunks in Chroma's
order); a document's title is its chunks' `title` metadata, else its source id; its metadata
is what all its chunks share (valid keys only). Chroma's embeddings are kept when they have
TEXT_EMBEDDING_DIM dimensions and come from the same model as ours (named by the collection's
embedding function, or by the caller); otherwise the chunks are embedded again by the embed
worker, in batches, as an upload's are. Each document is stored like an upload (its text as a
text/plain object, replacing its source id's); one whose chunks, title and metadata are
already stored is left alone, so a second run changes nothing.
"""

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.inference.base import InferenceBackend
from app.ingest.chunk import Chunk as TextChunk
from app.models import Chunk, Document
from app.schemas import METADATA_KEY
from app.services.documents import embedding_text, write_document
from app.services.embedding import embed_texts
from app.services.uploads import Upload, delete_replaced, stored
from app.storage import Storage

PAGE = 1000  # records read from Chroma at a time
CHECKED_AT_ONCE = 100  # documents compared with what is stored, in one query
METADATA_KEYS = 32
# Chroma's embedding functions that run all-MiniLM-L6-v2 (its default, in ONNX).
MINILM_FUNCTIONS = {"default", "onnx_mini_lm_l6_v2"}
MINILM = "all-MiniLM-L6-v2"


class ImportRefused(Exception):
    """What stops an import before anything is written: one line saying what to do."""


@dataclass
class ChromaDocument:
    source_id: str
    chunks: list[str] = field(default_factory=list)
    embeddings: list[list[float]] = field(default_factory=list)
    metadatas: list[dict[str, Any]] = field(default_factory=list)

    @property
    def title(self) -> str:
        titles = {str(m["title"]) for m in self.metadatas if m.get("title")}
        return titles.pop() if len(titles) == 1 else self.source_id

    @property
    def metadata(self) -> dict[str, Any]:
        """What every chunk's metadata holds alike, under keys a document's metadata takes."""
        shared = dict(self.metadatas[0])
        for other in self.metadatas[1:]:
            shared = {k: v for k, v in shared.items() if k in other and other[k] == v}
        valid = {
            k: v
            for k, v in sorted(shared.items())
            if k != "title"
            and isinstance(v, str | int | float | bool)
            and re.match(METADATA_KEY, k)
        }
        return dict(list(valid.items())[:METADATA_KEYS])


@dataclass
class ChromaCollection:
    name: str
    model: str | None  # the embedding model its embedding function names, if it names one
    documents: list[ChromaDocument]
    dims: set[int]

    @property
    def chunks(self) -> int:
        return sum(len(document.chunks) for document in self.documents)


def _model_of(collection: Any) -> str | None:
    function = (collection.configuration or {}).get("embedding_function")
    if function is None:
        return None
    name = function.name()
    if name in MINILM_FUNCTIONS:
        return MINILM
    model = (function.get_config() or {}).get("model_name")
    return str(model) if model else None


def read_collection(path: Path, name: str | None, source_field: str) -> ChromaCollection:
    """The collection `name` (the only one, when None) of the Chroma directory at `path`,
    grouped into documents by the metadata field `source_field`."""
    if not (path / "chroma.sqlite3").is_file():
        raise ImportRefused(
            f"{path} is not a Chroma directory (no chroma.sqlite3 in it): give the path a "
            "chromadb.PersistentClient was opened on"
        )
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(str(path), ChromaSettings(anonymized_telemetry=False))
    names = sorted(collection.name for collection in client.list_collections())
    if name is None:
        if len(names) != 1:
            found = ", ".join(names) or "none"
            raise ImportRefused(f"{path} holds collections {found}: choose one with --collection")
        name = names[0]
    if name not in names:
        found = ", ".join(names) or "none"
        raise ImportRefused(f"{path} has no collection {name!r}; it has {found}")
    collection = client.get_collection(name)
    documents: dict[str, ChromaDocument] = {}
    dims: set[int] = set()
    unsourced = 0
    for offset in range(0, collection.count(), PAGE):
        page = collection.get(
            include=["documents", "metadatas", "embeddings"], limit=PAGE, offset=offset
        )
        vectors = np.asarray(page["embeddings"], dtype=np.float32)
        for text, metadata, vector in zip(
            page["documents"] or [], page["metadatas"] or [], vectors, strict=True
        ):
            source = (metadata or {}).get(source_field)
            if source is None or not text:
                unsourced += 1
                continue
            document = documents.setdefault(str(source), ChromaDocument(str(source)))
            document.chunks.append(text)
            document.embeddings.append(vector.tolist())
            document.metadatas.append(dict(metadata or {}))
            dims.add(len(vector))
    if unsourced:
        raise ImportRefused(
            f"{unsourced} records of {name!r} have no text or no {source_field!r} metadata: "
            "choose the field that names their document with --source-field"
        )
    return ChromaCollection(name, _model_of(collection), list(documents.values()), dims)


def keeps_embeddings(collection: ChromaCollection, settings: Settings, model: str | None) -> bool:
    """Whether Chroma's embeddings can be stored as they are: our size and our model."""
    ours = Path(settings.text_embedding_model or MINILM).name
    theirs = model or collection.model
    same = theirs is not None and Path(theirs).name == ours
    return same and collection.dims == {settings.text_embedding_dim}


_STORED = (
    select(
        Document.source_id,
        Document.title,
        Document.metadata_.label("meta"),
        func.array_agg(aggregate_order_by(Chunk.content, Chunk.ord)).label("chunks"),
    )
    .join(Chunk, Chunk.document_id == Document.id)
    .where(Document.tenant == bindparam("tenant"), Document.source_id.in_(bindparam("ids")))
    .group_by(Document.id)
)


async def _unchanged(engine: AsyncEngine, tenant: str, documents: list[ChromaDocument]) -> set[str]:
    """The source ids whose chunks (in order), title and metadata are stored as they would
    be."""
    params = {"tenant": tenant, "ids": [d.source_id for d in documents]}
    async with engine.connect() as conn:
        rows = (await conn.execute(_STORED, params)).all()
    stored = {row.source_id: (row.title, row.meta, row.chunks) for row in rows}
    return {
        d.source_id
        for d in documents
        if stored.get(d.source_id) == (d.title[:300], d.metadata, d.chunks)
    }


@dataclass
class ImportSummary:
    documents: int = 0
    unchanged: int = 0
    chunks: int = 0
    embedded: int = 0  # chunks embedded again by the embed worker

    def lines(self, dry_run: bool) -> Iterator[str]:
        verb = "would import" if dry_run else "imported"
        yield (
            f"{verb} {self.documents} documents ({self.chunks} chunks; {self.embedded} embedded "
            f"again, the rest with Chroma's embeddings); {self.unchanged} already up to date"
        )


async def import_collection(
    engine: AsyncEngine,
    storage: Storage,
    backend: InferenceBackend,
    settings: Settings,
    collection: ChromaCollection,
    tenant: str,
    keep: bool,
    dry_run: bool = False,
    progress: Callable[[int], None] = lambda chunks: None,
) -> ImportSummary:
    """Store the collection's changed documents as the tenant's (nothing when `dry_run`)."""
    summary = ImportSummary()
    for start in range(0, len(collection.documents), CHECKED_AT_ONCE):
        documents = collection.documents[start : start + CHECKED_AT_ONCE]
        unchanged = await _unchanged(engine, tenant, documents)
        summary.unchanged += len(unchanged)
        for document in documents:
            if document.source_id not in unchanged:
                summary.documents += 1
                summary.chunks += len(document.chunks)
                summary.embedded += 0 if keep else len(document.chunks)
                if not dry_run:
                    await _store(engine, storage, backend, settings, document, tenant, keep)
            progress(len(document.chunks))
    return summary


async def _store(
    engine: AsyncEngine,
    storage: Storage,
    backend: InferenceBackend,
    settings: Settings,
    document: ChromaDocument,
    tenant: str,
    keep: bool,
) -> None:
    chunks = [TextChunk(heading="", content=text) for text in document.chunks]
    vectors = document.embeddings
    if not keep:
        texts = [embedding_text(document.title, chunk) for chunk in chunks]
        vectors = await embed_texts(backend, settings, texts, f"import-{uuid.uuid4()}")
    text = "\n\n".join(document.chunks).encode()
    upload = Upload(
        document.source_id, document.title, "text/plain", text, document.metadata, tenant
    )
    key = f"documents/{uuid.uuid4()}.txt"
    async with stored(storage, key, upload), engine.begin() as conn:
        row = await write_document(conn, upload.row(document.title, key), chunks, vectors)
    await delete_replaced(storage, row.old_key, key)
