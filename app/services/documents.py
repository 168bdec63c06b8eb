"""Documents: parse, chunk and embed an upload, store the raw file and its chunks, replace
a `source_id`'s previous version atomically; read and delete them."""

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.config import Settings
from app.core.errors import InvalidInput, NotFound
from app.inference.base import InferenceBackend
from app.ingest.chunk import Chunk as TextChunk
from app.ingest.chunk import chunk_sections
from app.ingest.parse import EXTENSIONS, ParseError, parse
from app.models import Chunk, Document
from app.schemas import DocumentOut
from app.services.embedding import embed_texts
from app.services.uploads import Upload, delete_replaced, stored, upsert
from app.storage import Storage


def embedding_text(title: str, chunk: TextChunk) -> str:
    """What is embedded for a chunk: where it sits (title, headings), then its text."""
    place = " > ".join(part for part in (title, chunk.heading) if part)
    return f"{place}\n{chunk.content}" if place else chunk.content


@dataclass(frozen=True)
class Prepared:
    """A document parsed and chunked, with the texts to embed (one per chunk)."""

    title: str
    chunks: list[TextChunk]
    texts: list[str]


def prepare(upload: Upload, settings: Settings) -> Prepared:
    """Parse and chunk `upload` (CPU work: run it off the event loop)."""
    try:
        parsed = parse(upload.data, upload.content_type)
    except ParseError as exc:
        raise InvalidInput(str(exc)) from None
    chunks = chunk_sections(parsed.sections, settings.chunk_tokens, settings.chunk_overlap_tokens)
    # The title given, else the file's own (first heading, <title>, PDF metadata), else the
    # source_id (a form upload's file name by default).
    title = upload.title or parsed.title or upload.source_id
    return Prepared(title, chunks, [embedding_text(title, chunk) for chunk in chunks])


def object_key(upload: Upload) -> str:
    return f"documents/{uuid.uuid4()}{EXTENSIONS[upload.content_type]}"


async def write_document(
    conn: AsyncConnection,
    row: dict[str, Any],
    chunks: list[TextChunk],
    vectors: list[list[float]],
) -> Row:
    """The document's row (new or replacing its source_id's; `audio_seconds` for a transcript)
    and all its chunks, in `conn`'s transaction: (id, created, old_key)."""
    document = await upsert(conn, "documents", {"audio_seconds": None, **row})
    await conn.execute(delete(Chunk).where(Chunk.document_id == document.id))
    rows = [
        {
            "document_id": document.id,
            "ord": i,
            "heading": chunk.heading,
            "content": chunk.content,
            "embedding": vector,
            "metadata": chunk.metadata,
        }
        for i, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
    ]
    await conn.execute(insert(Chunk), rows)
    return document


async def ingest(
    engine: AsyncEngine,
    storage: Storage,
    backend: InferenceBackend,
    settings: Settings,
    upload: Upload,
    request_id: str,
) -> tuple[DocumentOut, bool]:
    """Store `upload` as a document; returns it and whether it is new (not a replacement).
    Nothing is written until every chunk is embedded, so a failure leaves the old version."""
    prepared = await asyncio.to_thread(prepare, upload, settings)
    vectors = await embed_texts(backend, settings, prepared.texts, request_id)
    key = object_key(upload)
    async with stored(storage, key, upload), engine.begin() as conn:
        row = await write_document(conn, upload.row(prepared.title, key), prepared.chunks, vectors)
    await delete_replaced(storage, row.old_key, key)
    return await get_document(engine, row.id, upload.tenant), row.created


_DOCUMENT = (
    select(*Document.__table__.c, func.count(Chunk.id).label("chunks"))
    .outerjoin(Chunk, Chunk.document_id == Document.id)
    .where(Document.id == bindparam("id"), Document.tenant == bindparam("tenant"))
    .group_by(Document.id)
)


async def get_document(engine: AsyncEngine, document_id: uuid.UUID, tenant: str) -> DocumentOut:
    """The tenant's document (another tenant's is not found)."""
    async with engine.connect() as conn:
        params = {"id": document_id, "tenant": tenant}
        row = (await conn.execute(_DOCUMENT, params)).one_or_none()
    if row is None:
        raise NotFound(f"document {document_id} not found")
    return DocumentOut.model_validate(row._mapping)
