"""`GET /v1/objects/{key}`: an object, for whoever holds a signed URL to it, and `PUT` to store
one (a worker's output) with a signed upload URL (local storage; on GCS and Supabase the signed
URLs point at the bucket itself). The signature is the credential: no API key."""

import asyncio
import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.deps import SettingsDep, StorageDep
from app.api.upload_body import UPLOAD_MARK
from app.core.errors import Forbidden, NotFound, PayloadTooLarge
from app.schemas import ErrorBody, error_responses
from app.storage import LocalStorage, ObjectNotFound, Storage, StorageError

router = APIRouter(prefix="/v1", tags=["objects"])
Expires = Annotated[int, Query(description="Unix time the URL stops working")]
Signature = Annotated[str, Query(min_length=64, max_length=64)]


def _local(storage: Storage) -> LocalStorage:
    if not isinstance(storage, LocalStorage):
        raise NotFound("objects are served by the storage bucket, not by the API")
    return storage


@router.get(
    "/objects/{key:path}",
    summary="Download a stored object by signed URL",
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the object"},
        403: {"model": ErrorBody, "description": "An invalid or expired signed URL"},
        **error_responses(404, 422),
    },
)
async def read_object(
    key: str,
    storage: StorageDep,
    expires: Expires,
    signature: Signature,
) -> Response:
    storage = _local(storage)
    if not storage.verify(key, expires, signature):
        raise Forbidden("the signed URL is invalid or has expired")
    try:
        data = storage.get(key)
    except (ObjectNotFound, StorageError) as exc:
        raise NotFound(str(exc)) from exc
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return Response(data, media_type=content_type, headers={"Cache-Control": "private"})


@router.put(
    "/objects/{key:path}",
    summary="Store an object by signed upload URL",
    status_code=204,
    response_class=Response,
    openapi_extra={
        UPLOAD_MARK: True,
        "requestBody": {"required": True, "content": {"application/octet-stream": {}}},
    },
    responses={
        403: {"model": ErrorBody, "description": "An invalid or expired signed upload URL"},
        **error_responses(404, 413, 422),
    },
)
async def write_object(
    key: str,
    request: Request,
    storage: StorageDep,
    settings: SettingsDep,
    expires: Expires,
    signature: Signature,
) -> None:
    """The request's body as the object at `key` (e.g. an image a worker generated)."""
    storage = _local(storage)
    if not storage.verify(key, expires, signature, upload=True):
        raise Forbidden("the signed upload URL is invalid or has expired")
    data = await request.body()
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the object is over {settings.max_upload_bytes} bytes")
    content_type = request.headers.get("content-type", "application/octet-stream")
    await asyncio.to_thread(storage.put, key, data, content_type)
