"""`/v1/documents`: upload a document (a file, or text as JSON) to be chunked, embedded and
searched; list the tenant's, read and delete one."""

import uuid
from typing import Annotated

from fastapi import Query, Request, Response

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
from app.core.errors import UnsupportedMediaType
from app.ingest.parse import UnsupportedType, media_type
from app.models import Document
from app.schemas import DocumentIn, DocumentOut, JobOut, Page, UploadOut, error_responses
from app.services.documents import get_document, ingest
from app.services.jobs import ingest_audio_later, ingest_later
from app.services.listing import list_uploads
from app.services.transcription import sniffed_audio_type
from app.services.uploads import Upload, check_size, delete_upload

router = keyed_router(tags=["documents"])

_BODY = upload_openapi(DocumentIn)


@router.post(
    "/documents",
    summary="Upload a document for search",
    status_code=201,
    openapi_extra=_BODY,
    response_model=DocumentOut | JobOut,
    responses={
        200: {"model": DocumentOut, "description": "replaced the source_id's document"},
        202: {"model": JobOut, "description": "with async=true, or audio: the job that ingests it"},
        **error_responses(413, 415, 502, 504),
    },
)
async def create_document(
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    storage: StorageDep,
    backend: BackendDep,
    jobs: JobsDep,
    request_id: RequestIdDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
    run_async: Annotated[bool, Query(alias="async")] = False,
) -> DocumentOut | JobOut:
    """Text, Markdown, HTML or PDF; the same `source_id` again replaces the document. With
    `async=true` the chunks are embedded in a job (202), for large documents. Audio (wav, mp3,
    m4a, flac, ogg, webm) is always a job (202): transcribed, its transcript chunked by its
    segments (each chunk's `chunk_metadata` says where it is in the audio) and embedded."""
    if body_kind(request, "{source_id, title, text, metadata}") == "form":
        upload, file = await form_upload(request, settings.max_upload_bytes)
        if (audio := sniffed_audio_type(upload.data)) is not None:
            upload.content_type, upload.tenant = audio, caller.tenant
            response.status_code = 202
            return await ingest_audio_later(jobs, upload, caller, idempotency_key)
        try:
            upload.content_type = media_type(file.content_type, file.filename)
        except UnsupportedType as exc:
            raise UnsupportedMediaType(str(exc)) from None
    else:
        body = validated(DocumentIn, await request.body(), json_text=True)
        data = body.text.encode()
        check_size(data, settings.max_upload_bytes)
        upload = Upload(body.source_id, body.title, "text/markdown", data, body.metadata)
    upload.tenant = caller.tenant
    if run_async:
        response.status_code = 202
        return await ingest_later(jobs, upload, caller, idempotency_key)
    document, created = await ingest(engine, storage, backend, settings, upload, request_id)
    response.status_code = 201 if created else 200
    return document


@router.get("/documents", summary="List documents")
async def list_documents(
    engine: EngineDep,
    caller: CallerDep,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
    source_id_prefix: SourceIdPrefix = None,
) -> Page[UploadOut]:
    """The tenant's documents, newest first, `limit` at a time (`cursor`: the last page's
    `next_cursor`)."""
    return await list_uploads(engine, Document, caller.tenant, limit, cursor, source_id_prefix)


@router.get(
    "/documents/{document_id}", summary="Read a document's details", responses=error_responses(404)
)
async def read_document(
    document_id: uuid.UUID, engine: EngineDep, caller: CallerDep
) -> DocumentOut:
    return await get_document(engine, document_id, caller.tenant)


@router.delete(
    "/documents/{document_id}",
    summary="Delete a document",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def remove_document(
    document_id: uuid.UUID, engine: EngineDep, storage: StorageDep, caller: CallerDep
) -> None:
    """Deletes the document, its chunks and its stored file."""
    await delete_upload(engine, storage, Document, document_id, caller.tenant)
