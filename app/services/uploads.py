"""What documents and images share: size checks, the object in storage (removed again if
the upload fails), and the row replaced by `source_id`, whose old object is removed only once
the new row is committed. Writers of one `source_id` take turns (a transaction lock on it), so
each replacement learns the key it replaced, however many race: no file is left without a row."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import Row, bindparam, delete, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.errors import InvalidInput, NotFound, PayloadTooLarge
from app.models import Document, Image
from app.storage import Storage

SIGNED_URL_TTL_S = 900  # how long a worker may take to start reading a stored file


@dataclass
class Upload:
    source_id: str
    title: str | None
    content_type: str
    data: bytes
    metadata: dict[str, Any] = field(default_factory=dict)
    tenant: str = ""  # whose it is: the caller's, set by the route

    def row(self, title: str, key: str) -> dict[str, Any]:
        """The upload's columns in `documents` or `images`, stored at `key`."""
        if not self.tenant:
            raise ValueError("an upload belongs to a tenant")
        return {
            "tenant": self.tenant,
            "source_id": self.source_id,
            "title": title[:300],
            "content_type": self.content_type,
            "object_key": key,
            "size_bytes": len(self.data),
            "metadata": self.metadata,
        }


def check_size(data: bytes, limit: int) -> None:
    if not data:
        raise InvalidInput("the file is empty")
    if len(data) > limit:
        raise PayloadTooLarge(
            f"the file is {len(data)} bytes; the limit is {limit} (MAX_UPLOAD_BYTES)"
        )


@asynccontextmanager
async def stored(storage: Storage, key: str, upload: Upload) -> AsyncIterator[None]:
    """The upload's bytes at `key` for the block; deleted again if the block fails."""
    await asyncio.to_thread(storage.put, key, upload.data, upload.content_type)
    try:
        yield
    except BaseException:
        await asyncio.to_thread(storage.delete, key)
        raise


async def delete_replaced(storage: Storage, old_key: str | None, key: str) -> None:
    if old_key and old_key != key:
        await asyncio.to_thread(storage.delete, old_key)


# Insert, or replace the row of the same source_id. The subquery in RETURNING reads the
# snapshot from before the statement: the object key the row had (NULL for a new row). It is
# the latest one because the statement runs under _TURN's lock, taken by an earlier statement
# (READ COMMITTED: a new snapshot per statement), so no concurrent writer committed unseen.
_TURN = text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))")
_UPSERT = """
INSERT INTO {table} AS t
    (id, tenant, source_id, title, content_type, object_key, size_bytes, metadata{cols})
VALUES (:id, :tenant, :source_id, :title, :content_type, :object_key, :size_bytes,
    CAST(:metadata AS jsonb){values})
ON CONFLICT (tenant, source_id) DO UPDATE SET
    title = EXCLUDED.title, content_type = EXCLUDED.content_type,
    object_key = EXCLUDED.object_key, size_bytes = EXCLUDED.size_bytes,
    metadata = EXCLUDED.metadata, updated_at = now(){updates}
RETURNING t.id, (t.xmax = 0) AS created,
    (SELECT object_key FROM {table} WHERE tenant = :tenant AND source_id = :source_id) AS old_key
"""
UPSERT = {
    "documents": text(
        _UPSERT.format(
            table="documents",
            cols=", audio_seconds",
            values=", :audio_seconds",
            updates=", audio_seconds = EXCLUDED.audio_seconds",
        )
    ),
    "images": text(
        _UPSERT.format(
            table="images",
            cols=", embedding",
            values=", :embedding",
            updates=", embedding = EXCLUDED.embedding",
        )
    ).bindparams(bindparam("embedding", type_=Vector())),
}


async def upsert(conn: AsyncConnection, table: str, row: dict[str, Any], **columns: Any) -> Row:
    """`row` (an `Upload.row`) in `table`, new or replacing its source_id's: (id, created,
    old_key)."""
    await conn.execute(_TURN, {"name": f"{table}/{row['tenant']}/{row['source_id']}"})
    params = {"id": uuid.uuid4(), **row, "metadata": json.dumps(row["metadata"]), **columns}
    return (await conn.execute(UPSERT[table], params)).one()


async def delete_upload(
    engine: AsyncEngine,
    storage: Storage,
    model: type[Document | Image],
    row_id: uuid.UUID,
    tenant: str | None,
) -> None:
    """Remove the stored file, then the row (with a document's chunks): in this order, so a
    failure part-way leaves a row to retry with, never a file nothing lists. Only `tenant`'s
    (None: anyone's, for retention)."""
    query = select(model.object_key).where(model.id == row_id)
    if tenant is not None:
        query = query.where(model.tenant == tenant)
    async with engine.connect() as conn:
        key = await conn.scalar(query)
    if key is None:
        raise NotFound(f"{model.__name__.lower()} {row_id} not found")
    await asyncio.to_thread(storage.delete, key)
    async with engine.begin() as conn:
        await conn.execute(delete(model).where(model.id == row_id))
