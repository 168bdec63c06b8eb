"""`POST /v1/embeddings`: a text or image embedding from the CLIP worker, HMAC-signed."""

from app.api.deps import BackendDep, RequestIdDep, SettingsDep, keyed_router
from app.core.errors import WorkerFailed
from app.schemas import EmbeddingRequest, EmbeddingResponse, error_responses
from app.services.embedding import clip_job

router = keyed_router(tags=["embeddings"])


@router.post(
    "/embeddings", summary="Embed a text or an image", responses=error_responses(413, 502, 504)
)
async def embeddings(
    body: EmbeddingRequest,
    settings: SettingsDep,
    backend: BackendDep,
    request_id: RequestIdDep,
) -> EmbeddingResponse:
    field, value = (
        ("text", body.text) if body.text is not None else ("image_url", str(body.image_url))
    )
    job = clip_job(settings, {field: value, "normalize": body.normalize, "request_id": request_id})
    result = await backend.embed_clip(job, request_id)
    try:
        return EmbeddingResponse.model_validate(result)
    except ValueError as exc:
        raise WorkerFailed("the worker returned a malformed embedding") from exc
