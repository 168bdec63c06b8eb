"""`/v1/images`: upload an image (a file, or a URL to fetch) to be embedded with CLIP and
found by text search, or generate images from a prompt (OpenAI's `POST /v1/images/generations`);
list the tenant's, read and delete one."""

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from app.api.deps import (
    BackendDep,
    CallerDep,
    EngineDep,
    IdempotencyKey,
    JobsDep,
    PageCursor,
    PageLimit,
    RequestIdDep,
    SettingsDep,
    SourceIdPrefix,
    StorageDep,
    keyed_router,
)
from app.api.upload_body import body_kind, form_upload, upload_openapi, validated
from app.core.errors import InvalidInput
from app.models import Image
from app.schemas import ImageIn, JobOut, Page, UploadOut, error_responses
from app.services.image_generation import (
    URL_TTL_S,
    ImageGenerationIn,
    generate_images,
    image_backend,
)
from app.services.images import add_image, fetch_image, get_image, image_key, image_type
from app.services.jobs import generate_later
from app.services.listing import list_uploads
from app.services.uploads import Upload, check_size, delete_upload

router = keyed_router(tags=["images"])

_BODY = upload_openapi(ImageIn)


@router.post(
    "/images",
    summary="Upload an image for search",
    status_code=201,
    openapi_extra=_BODY,
    responses={
        200: {"model": UploadOut, "description": "replaced the source_id's image"},
        **error_responses(413, 415, 502, 504),
    },
)
async def create_image(
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    storage: StorageDep,
    backend: BackendDep,
    request_id: RequestIdDep,
    caller: CallerDep,
) -> UploadOut:
    """PNG, JPEG, GIF or WebP; the same `source_id` again replaces the image."""
    if body_kind(request, "{url, source_id, title, metadata}") == "form":
        upload, _file = await form_upload(request, settings.max_upload_bytes)
    else:
        body = validated(ImageIn, await request.body(), json_text=True)
        url = str(body.url)
        if body.source_id is None and len(url) > 200:
            raise InvalidInput("the URL is over 200 characters: give a source_id")
        data = await fetch_image(url, settings)
        check_size(data, settings.max_upload_bytes)
        upload = Upload(body.source_id or url, body.title, "", data, body.metadata)
    upload.content_type = image_type(upload.data)[0]
    upload.tenant = caller.tenant
    image, created = await add_image(engine, storage, backend, settings, upload, request_id)
    response.status_code = 201 if created else 200
    return image


@router.post(
    "/images/generations",
    summary="Generate images, as OpenAI's API does",
    responses={
        200: {
            "description": "OpenAI's images response: `data` holds each image's `url` (an hour) "
            "or `b64_json`, with its `id` among the tenant's images and its `seed`"
        },
        202: {"model": JobOut, "description": "with async=true: the job that generates them"},
        **error_responses(404, 409, 413, 502, 504),
    },
)
async def create_image_generation(
    body: ImageGenerationIn,
    request: Request,
    settings: SettingsDep,
    engine: EngineDep,
    storage: StorageDep,
    backend: BackendDep,
    jobs: JobsDep,
    request_id: RequestIdDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
    run_async: Annotated[bool, Query(alias="async", description="generate in a job (202)")] = False,
) -> Any:
    """Images from `prompt` by the image model (IMAGEGEN_MODEL) or the deployment `model`
    names, kept as the tenant's images (GET /v1/images lists them, GET
    /v1/images/{id}/content reads one; `embed: true` makes them searchable). With
    `async=true`, generated in a job (202) whose result lists them."""
    if run_async:
        job = await generate_later(jobs, caller, body, idempotency_key)
        return JSONResponse(job.model_dump(mode="json"), status_code=202)
    runner = request.app.state.deployments
    serving = await image_backend(runner, backend, settings, caller.tenant, body.model)
    return await generate_images(
        engine, storage, serving, settings, caller.tenant, body, request_id
    )


@router.get("/images", summary="List images")
async def list_images(
    engine: EngineDep,
    caller: CallerDep,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
    source_id_prefix: SourceIdPrefix = None,
) -> Page[UploadOut]:
    """The tenant's images, newest first, `limit` at a time (`cursor`: the last page's
    `next_cursor`)."""
    return await list_uploads(engine, Image, caller.tenant, limit, cursor, source_id_prefix)


@router.get(
    "/images/{image_id:uuid}", summary="Read an image's details", responses=error_responses(404)
)
async def read_image(image_id: uuid.UUID, engine: EngineDep, caller: CallerDep) -> UploadOut:
    return await get_image(engine, image_id, caller.tenant)


@router.get(
    "/images/{image_id:uuid}/content",
    summary="Download an image",
    status_code=307,
    response_class=RedirectResponse,
    responses={
        307: {"description": "to a signed URL of the image, good for an hour"},
        **error_responses(404),
    },
)
async def read_image_content(
    image_id: uuid.UUID, engine: EngineDep, storage: StorageDep, caller: CallerDep
) -> RedirectResponse:
    key = await image_key(engine, image_id, caller.tenant)
    url = await asyncio.to_thread(storage.signed_url, key, URL_TTL_S)
    return RedirectResponse(url, status_code=307)


@router.delete(
    "/images/{image_id:uuid}",
    summary="Delete an image",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def remove_image(
    image_id: uuid.UUID, engine: EngineDep, storage: StorageDep, caller: CallerDep
) -> None:
    await delete_upload(engine, storage, Image, image_id, caller.tenant)
