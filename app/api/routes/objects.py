"""`GET /v1/objects/{key}`: an upload, for whoever holds a signed URL to it (local storage;
on GCS the signed URLs point at GCS itself). The signature is the credential: no API key."""

import mimetypes

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.api.deps import StorageDep
from app.core.errors import Forbidden, NotFound
from app.schemas import ErrorBody, error_responses
from app.storage import LocalStorage, ObjectNotFound, StorageError

router = APIRouter(prefix="/v1", tags=["objects"])


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
    expires: int = Query(..., description="Unix time the URL stops working"),
    signature: str = Query(..., min_length=64, max_length=64),
) -> Response:
    if not isinstance(storage, LocalStorage):
        raise NotFound("objects are served by the storage bucket, not by the API")
    if not storage.verify(key, expires, signature):
        raise Forbidden("the signed URL is invalid or has expired")
    try:
        data = storage.get(key)
    except (ObjectNotFound, StorageError) as exc:
        raise NotFound(str(exc)) from exc
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return Response(data, media_type=content_type, headers={"Cache-Control": "private"})
