"""Images: stored, embedded by the CLIP worker from a signed URL, replaced by `source_id`."""

import asyncio
import functools
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.errors import InvalidInput, NotFound, UnsupportedMediaType
from app.inference.base import InferenceBackend
from app.models import Image
from app.schemas import UploadOut
from app.services.embedding import embed_clip
from app.services.uploads import SIGNED_URL_TTL_S, Upload, delete_replaced, stored, upsert
from app.storage import Storage
from gpu_worker.common.fetch import FetchError, fetch_bytes, on_fetch_threads

# Signatures of the image formats the CLIP worker reads, and their file extensions.
_MAGIC = {
    b"\x89PNG\r\n\x1a\n": ("image/png", ".png"),
    b"\xff\xd8\xff": ("image/jpeg", ".jpg"),
    b"GIF87a": ("image/gif", ".gif"),
    b"GIF89a": ("image/gif", ".gif"),
}
# How long the worker's download link lasts: enough for a cold start and a queue.


def image_type(data: bytes) -> tuple[str, str]:
    """(media type, extension) of a PNG, JPEG, GIF or WebP image, read from its first bytes."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    for magic, kind in _MAGIC.items():
        if data.startswith(magic):
            return kind
    raise UnsupportedMediaType("unsupported image type: upload a PNG, JPEG, GIF or WebP image")


async def fetch_image(url: str, settings: Settings) -> bytes:
    """The image at a user's `url`, downloaded with the worker's SSRF and size rules."""
    try:
        return await on_fetch_threads(
            functools.partial(
                fetch_bytes,
                url,
                max_bytes=settings.max_upload_bytes,
                connect_timeout=3.0,
                read_timeout=10.0,
                deadline_s=settings.fetch_deadline_seconds,
                allowed_networks=settings.fetch_allowed_networks,
            )
        )
    except FetchError as exc:
        raise InvalidInput(f"cannot fetch the image: {exc}") from None


async def add_image(
    engine: AsyncEngine,
    storage: Storage,
    backend: InferenceBackend,
    settings: Settings,
    upload: Upload,
    request_id: str,
) -> tuple[UploadOut, bool]:
    """Store and embed `upload` (its content type already checked); returns it and whether it
    is new. A failed embedding leaves the previous version of the source_id as it was."""
    key = f"images/{uuid.uuid4()}{image_type(upload.data)[1]}"
    async with stored(storage, key, upload):
        url = await asyncio.to_thread(storage.signed_url, key, SIGNED_URL_TTL_S)
        vector = await embed_clip(backend, settings, "image_url", url, request_id)
        async with engine.begin() as conn:
            columns = upload.row(upload.title or upload.source_id, key)
            row = await upsert(conn, "images", columns, embedding=vector)
    await delete_replaced(storage, row.old_key, key)
    return await get_image(engine, row.id, upload.tenant), row.created


_COLUMNS = [column for column in Image.__table__.c if column.name != "embedding"]


async def image_key(engine: AsyncEngine, image_id: uuid.UUID, tenant: str) -> str:
    """Where the tenant's image is stored (another tenant's is not found)."""
    query = select(Image.object_key).where(Image.id == image_id, Image.tenant == tenant)
    async with engine.connect() as conn:
        key = await conn.scalar(query)
    if key is None:
        raise NotFound(f"image {image_id} not found")
    return key


async def get_image(engine: AsyncEngine, image_id: uuid.UUID, tenant: str) -> UploadOut:
    """The tenant's image (another tenant's is not found)."""
    query = select(*_COLUMNS).where(Image.id == image_id, Image.tenant == tenant)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise NotFound(f"image {image_id} not found")
    return UploadOut.model_validate(row._mapping)
