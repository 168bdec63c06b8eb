"""Semantic search over chunks (text) and images with pgvector's HNSW indexes, and the
filters a search can take."""

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, literal, null, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.config import Settings
from app.core.errors import InvalidInput
from app.inference.base import InferenceBackend
from app.models import Chunk, Document, Image
from app.schemas import SearchHit, holds_nul
from app.services.embedding import embed_clip, embed_texts

MAX_K = 50
FILTER_FIELDS = "source_id, document_id, content_type or metadata.<key>"
# The HNSW candidate list: at least MAX_K, and large enough for recall@10 >= 0.95 on 100k
# chunks (bench/search.py). With filters, the scan goes on until k rows pass them, in exact
# distance order (pgvector >= 0.8), instead of returning fewer.
EF_SEARCH = 100
_SEARCH_SETTINGS = text(
    "SELECT set_config('hnsw.ef_search', :ef_search, true),"
    " set_config('hnsw.iterative_scan', 'strict_order', true)"
)
_METADATA_KEY = re.compile(r"^metadata\.([A-Za-z0-9_-]{1,64})$")


def _not_a_number(constant: str) -> None:
    raise InvalidInput(f"filter: {constant} is not a finite number")


def filter_clauses(raw: str | None, model: type[Document | Image]) -> list[ColumnElement[bool]]:
    """WHERE clauses from `filter`, a JSON object of field -> value, all of which must match."""
    if not raw:
        return []
    try:
        fields = json.loads(raw, parse_constant=_not_a_number)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        raise InvalidInput('filter must be a JSON object, e.g. {"source_id": "handbook"}')
    clauses = []
    for name, value in fields.items():
        if isinstance(value, dict | list) or value is None:
            raise InvalidInput(f"filter {name}: give a string, number or boolean to match")
        if holds_nul([name, value]):
            raise InvalidInput(f"filter {name!r}: must not contain the NUL character (U+0000)")
        if key := _METADATA_KEY.match(name):
            clauses.append(model.metadata_.contains({key.group(1): value}))
        elif name in ("source_id", "content_type"):
            clauses.append(getattr(model, name) == str(value))
        elif name == "document_id":
            try:
                clauses.append(model.id == uuid.UUID(str(value)))
            except ValueError:
                raise InvalidInput(f"filter document_id: {value!r} is not a UUID") from None
        else:
            raise InvalidInput(f"unknown filter field {name!r}: filter on {FILTER_FIELDS}")
    return clauses


async def ranked(
    conn: AsyncConnection, statement: Select, ef_search: int = EF_SEARCH
) -> list[SearchHit]:
    """The hits of a `chunk_query` or `image_query`, run in `conn`'s transaction."""
    await conn.execute(_SEARCH_SETTINGS, {"ef_search": str(ef_search)})
    rows = (await conn.execute(statement)).all()
    return [SearchHit.model_validate(row._mapping) for row in rows]


def chunk_query(vector: list[float], k: int, clauses: Sequence[Any] = ()) -> Select:
    """The `k` chunks nearest to `vector` (cosine), with their documents."""
    distance = Chunk.embedding.cosine_distance(vector)
    return (
        select(
            Chunk.document_id,
            Document.source_id,
            Document.title,
            Chunk.heading,
            Chunk.content.label("chunk"),
            (literal(1.0) - distance).label("score"),
            Document.metadata_.label("metadata"),
            Chunk.metadata_.label("chunk_metadata"),
        )
        .join(Document, Document.id == Chunk.document_id)
        .where(*clauses)
        .order_by(distance)
        .limit(k)
    )


def image_query(vector: list[float], k: int, clauses: Sequence[Any] = ()) -> Select:
    distance = Image.embedding.cosine_distance(vector)
    return (
        select(
            Image.id.label("document_id"),
            Image.source_id,
            Image.title,
            null().label("heading"),
            null().label("chunk"),
            (literal(1.0) - distance).label("score"),
            Image.metadata_.label("metadata"),
            null().label("chunk_metadata"),
        )
        .where(Image.embedding.is_not(None), *clauses)
        .order_by(distance)
        .limit(k)
    )


async def search(
    engine: AsyncEngine,
    backend: InferenceBackend,
    settings: Settings,
    tenant: str,
    query: str,
    k: int,
    kind: Literal["text", "image"],
    raw_filter: str | None,
    request_id: str,
) -> list[SearchHit]:
    """The `k` chunks (kind text) or images (kind image, through CLIP's text tower) of
    `tenant`'s nearest to `query`, best first."""
    if kind == "text":
        clauses = [Document.tenant == tenant, *filter_clauses(raw_filter, Document)]
        [vector] = await embed_texts(backend, settings, [query], request_id)
        statement = chunk_query(vector, k, clauses)
    else:
        clauses = [Image.tenant == tenant, *filter_clauses(raw_filter, Image)]
        vector = await embed_clip(backend, settings, "text", query, request_id)
        statement = image_query(vector, k, clauses)
    async with engine.begin() as conn:
        return await ranked(conn, statement)
