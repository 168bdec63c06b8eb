"""`/v1/jobs`: work that runs asynchronously (text embeddings in batches; `?async=true`
uploads), and RunPod's webhook that completes it."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.api.deps import (
    CallerDep,
    EngineDep,
    IdempotencyKey,
    JobsDep,
    PageCursor,
    PageLimit,
    SettingsDep,
    keyed_router,
)
from app.schemas import EmbedJobIn, JobOut, JobStatus, JobSummary, Page, error_responses
from app.services import webhook
from app.services.embedding import batched, embed_job
from app.services.jobs import get_job, replayed, request_hash
from app.services.listing import list_jobs

router = keyed_router(tags=["jobs"])
webhook_router = APIRouter(include_in_schema=False)  # RunPod's: its signature is the credential


@router.post(
    "/jobs", summary="Start a batch embedding job", status_code=202, responses=error_responses(413)
)
async def create_job(
    body: EmbedJobIn,
    settings: SettingsDep,
    engine: EngineDep,
    jobs: JobsDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Queue the job; `GET /v1/jobs/{job_id}` shows it until it succeeds or fails."""
    hashed = request_hash("embed", body.model_dump_json())
    if (earlier := await replayed(engine, caller, idempotency_key, hashed)) is not None:
        return earlier
    batches = batched(body.texts, settings.embed_batch_size)
    payload = {"batch_sizes": [len(batch) for batch in batches]}
    parts = [("embed", embed_job(batch)) for batch in batches]
    job, _ = await jobs.create(caller, "embed", payload, parts, idempotency_key, hashed)
    return job


@router.get("/jobs", summary="List jobs")
async def list_jobs_route(
    engine: EngineDep,
    caller: CallerDep,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
    status: JobStatus | None = None,
) -> Page[JobSummary]:
    """The tenant's jobs, newest first, without their results (`GET /v1/jobs/{job_id}`)."""
    return await list_jobs(engine, caller.tenant, limit, cursor, status)


@router.get("/jobs/{job_id}", summary="Read a job and its result", responses=error_responses(404))
async def read_job(job_id: uuid.UUID, engine: EngineDep, caller: CallerDep) -> JobOut:
    return await get_job(engine, job_id, caller.tenant)


@webhook_router.post(webhook.PATH)
async def runpod_webhook(
    job_id: uuid.UUID,
    request: Request,
    jobs: JobsDep,
    part: Annotated[int, Query(ge=0)],
    signature: Annotated[str, Query(min_length=64, max_length=64)],
) -> dict[str, Any]:
    """A finished RunPod job. The URL's signature is the credential; a repeated delivery
    changes nothing and is answered 200 all the same, so RunPod stops retrying."""
    webhook.check(jobs.secret, job_id, part, signature)
    try:
        body = await request.json()
    except ValueError:
        body = None
    changed = await jobs.record(job_id, part, webhook.delivered(body))
    return {"ok": True, "changed": changed}
