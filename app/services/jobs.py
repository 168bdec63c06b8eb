"""Asynchronous jobs: work split into parts, each one call to a worker, queued with the
backend's `submit` (RunPod's `/run`). A part completes through RunPod's webhook
(`POST /internal/runpod-webhook/{job_id}`) or, without one, by polling its state; when the
last part is done, the job is finished by its kind (`KINDS`) in the same transaction.

Nothing stays running forever: a part the backend has lost (RunPod keeps results 30 minutes;
the local backend forgets its jobs when the API restarts) is submitted again, up to
MAX_ATTEMPTS times; a job past its deadline fails, saying so. A failed job keeps its stored
input, so that it can be retried (`python -m app jobs retry`: the dead letters replayed) until
retention deletes it after RETENTION_RAW_DAYS. A part reads a stored file by its key
(`audio_key`, `image_key`) and writes its outputs to theirs (`upload_keys`), signed into URLs
each time the part is sent.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core import keys
from app.core.config import Settings
from app.core.errors import ApiError, DatabaseUnavailable, InvalidInput, NotFound
from app.inference.base import InferenceBackend, QueuedJob
from app.ingest.chunk import Chunk as TextChunk
from app.models import Image, Job, JobPart
from app.schemas import JobOut
from app.services import webhook
from app.services.api_keys import Caller
from app.services.documents import embedding_text, object_key, prepare, write_document
from app.services.embedding import batched, checked_vectors, embed_job
from app.services.image_generation import (
    OUTPUT_TYPES,
    ImageGenerationIn,
    checked_images,
    generation_answer,
    generation_job,
    image_keys,
    image_rows,
    is_stack_model,
)
from app.services.transcription import (
    AUDIO_EXTENSIONS,
    Task,
    TranscriptionForm,
    audio_type,
    checked_transcript,
    form_summary,
    transcript,
    transcript_chunks,
    transcription_job,
)
from app.services.uploads import Upload, stored
from app.services.usage import Charge, usage_row, write_in
from app.storage import Storage

log = logging.getLogger("tandem.jobs")

MAX_ATTEMPTS = 3
FINAL = ("succeeded", "failed")
# With webhooks, the poller only looks at a job now and then, in case one never arrives.
WEBHOOK_FALLBACK_S = 60.0


def request_hash(*parts: bytes | str) -> str:
    """What an Idempotency-Key is bound to: the same key with another request is refused."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


_JOBS, _PARTS = Job.__table__, JobPart.__table__


async def _locked_job(conn: AsyncConnection, job_id: uuid.UUID) -> Row | None:
    return (
        await conn.execute(select(_JOBS).where(Job.id == job_id).with_for_update())
    ).one_or_none()


async def job_out(conn: AsyncConnection, job_id: uuid.UUID) -> JobOut | None:
    job = (await conn.execute(select(_JOBS).where(Job.id == job_id))).one_or_none()
    if job is None:
        return None
    done, total = (
        await conn.execute(
            select(func.count().filter(JobPart.status == "done"), func.count()).where(
                JobPart.job_id == job_id
            )
        )
    ).one()
    return JobOut(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        result=job.result,
        error=job.error,
        parts_done=done,
        parts=total,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


async def get_job(engine: AsyncEngine, job_id: uuid.UUID, tenant: str) -> JobOut:
    """The tenant's job (another tenant's is not found)."""
    async with engine.connect() as conn:
        owner = await conn.scalar(select(Job.tenant).where(Job.id == job_id))
        found = await job_out(conn, job_id) if owner == tenant else None
    if found is None:
        raise NotFound(f"job {job_id} not found")
    return found


async def replayed(
    engine: AsyncEngine, caller: Caller, key: str | None, hashed: str
) -> JobOut | None:
    """The job an earlier request with this Idempotency-Key created (None if none); 422 when
    that request was a different one."""
    if key is None:
        return None
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(Job.id, Job.request_hash).where(
                    Job.api_key_id == caller.key_id, Job.idempotency_key == key
                )
            )
        ).one_or_none()
        if row is None:
            return None
        if row.request_hash != hashed:
            raise InvalidInput(
                "this Idempotency-Key was used for a different request: use a new key"
            )
        return await job_out(conn, row.id)


Finished = tuple[dict[str, Any], list[str]]  # a result, and the objects to delete after commit


Staged = tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]  # a payload, and parts


@dataclass(frozen=True)
class Kind:
    """What a kind of job does once its parts' outputs are in: `next_stage` may add the parts
    of a next stage (and the job's new payload), else `finish` makes its result (in the
    transaction that completes the job; an ApiError from either fails the job) and names the
    objects to delete after commit; `stored_input` names the stored files a job of the kind
    reads (a failed job keeps them for a retry)."""

    finish: Callable[[AsyncConnection, Row, list[dict[str, Any]], Settings], Awaitable[Finished]]
    stored_input: Callable[[Row], list[str]] = lambda _job: []
    next_stage: Callable[[Row, list[dict[str, Any]], Settings], Staged | None] = (
        lambda _job, _outputs, _settings: None
    )


def _vectors(job: Row, outputs: list[dict[str, Any]], settings: Settings) -> list[list[float]]:
    """The text embeddings of an embedding job's parts, checked, in order."""
    dim = settings.text_embedding_dim
    return [
        vector
        for output, count in zip(outputs, job.payload["batch_sizes"], strict=True)
        for vector in checked_vectors(output, "embeddings", count, dim, "TEXT_EMBEDDING_DIM")
    ]


async def _embeddings(
    _conn: AsyncConnection, job: Row, outputs: list[dict[str, Any]], settings: Settings
) -> Finished:
    vectors = _vectors(job, outputs, settings)
    model = outputs[0].get("model")
    return {"embeddings": vectors, "dim": len(vectors[0]) if vectors else 0, "model": model}, []


async def _document(
    conn: AsyncConnection, job: Row, outputs: list[dict[str, Any]], settings: Settings
) -> Finished:
    """The uploaded document written with its chunks (`ingest_later` stored its file)."""
    vectors = _vectors(job, outputs, settings)
    payload = job.payload
    chunks = [TextChunk(heading, content) for heading, content in payload["chunks"]]
    # Jobs queued before tenants carry none in their row: the job's tenant is theirs.
    row = await write_document(conn, {"tenant": job.tenant, **payload["row"]}, chunks, vectors)
    result = {"document_id": str(row.id), "chunks": len(chunks), "created": row.created}
    new_key = payload["row"]["object_key"]
    return result, [row.old_key] if row.old_key and row.old_key != new_key else []


async def _transcript(
    _conn: AsyncConnection, job: Row, outputs: list[dict[str, Any]], _settings: Settings
) -> Finished:
    """The transcript as verbose_json; the audio (`transcribe_later` stored it) is deleted."""
    payload = job.payload
    return transcript(outputs[0], payload["task"], payload["words"]), [payload["object_key"]]


def _stored_file(job: Row) -> list[str]:
    return [job.payload["object_key"]]


def _embed_transcript(job: Row, outputs: list[dict[str, Any]], settings: Settings) -> Staged | None:
    """An audio document's transcript, chunked by its segments, as the parts that embed it."""
    payload = job.payload
    if payload["stage"] != "transcribe":
        return None
    result = checked_transcript(outputs[0])
    chunks = transcript_chunks(result["segments"], settings.chunk_tokens)
    if not chunks:
        raise InvalidInput("the audio holds no speech: there is nothing to search")
    title = payload["row"]["title"]
    batches = batched([embedding_text(title, chunk) for chunk in chunks], settings.embed_batch_size)
    staged = payload | {
        "stage": "embed",
        "row": payload["row"] | {"audio_seconds": result["duration"]},
        "chunks": [[chunk.heading, chunk.content, chunk.metadata] for chunk in chunks],
        "batch_sizes": [len(batch) for batch in batches],
        "language": result["language"],
    }
    return staged, [("embed", embed_job(batch)) for batch in batches]


async def _audio_document(
    conn: AsyncConnection, job: Row, outputs: list[dict[str, Any]], settings: Settings
) -> Finished:
    """The transcript written as the document's chunks (`ingest_audio_later` stored the
    audio: the document's file)."""
    vectors = _vectors(job, outputs[1:], settings)  # the first part is the transcription
    payload = job.payload
    chunks = [TextChunk(*chunk) for chunk in payload["chunks"]]
    row = await write_document(conn, {"tenant": job.tenant, **payload["row"]}, chunks, vectors)
    result = {
        "document_id": str(row.id),
        "chunks": len(chunks),
        "created": row.created,
        "audio_seconds": payload["row"]["audio_seconds"],
        "language": payload["language"],
    }
    new_key = payload["row"]["object_key"]
    return result, [row.old_key] if row.old_key and row.old_key != new_key else []


def _embed_generated(job: Row, outputs: list[dict[str, Any]], settings: Settings) -> Staged | None:
    """With `embed`, the parts that CLIP-embed the images just generated."""
    payload = job.payload
    if payload["stage"] != "generate" or not payload["request"]["embed"]:
        return None
    checked_images(outputs[0], len(payload["keys"]))
    parts = [
        ("clip", {"image_key": key, "normalize": True, "request_id": f"{job.id}-{i}"})
        for i, key in enumerate(payload["keys"])
    ]
    return payload | {"stage": "embed"}, parts


async def _generated(
    conn: AsyncConnection, job: Row, outputs: list[dict[str, Any]], settings: Settings
) -> Finished:
    """The generated images (the worker uploaded them) kept as the tenant's; the result is
    OpenAI's images response without URLs (GET /v1/images/{id}/content reads each)."""
    body = ImageGenerationIn.model_validate(job.payload["request"])
    result, clip = outputs[0], outputs[1:]
    dim = settings.image_embedding_dim
    embeddings: list[list[float] | None] = [
        checked_vectors(output, "embedding", 1, dim, "IMAGE_EMBEDDING_DIM")[0] for output in clip
    ] or [None] * body.n
    rows = image_rows(job.tenant, body, result, job.payload["keys"], embeddings)
    await conn.execute(insert(Image), rows)
    return generation_answer(body, result, rows), []


KINDS = {
    "embed": Kind(_embeddings),  # POST /v1/jobs
    # ?async=true uploads: their stored file becomes the document's.
    "document": Kind(_document, lambda job: [job.payload["row"]["object_key"]]),
    # ?async=true transcriptions: the audio is kept only while the job runs.
    "transcribe": Kind(_transcript, _stored_file),
    # Audio uploaded as a document: transcribed, then embedded and written.
    "audio_document": Kind(
        _audio_document, lambda job: [job.payload["row"]["object_key"]], _embed_transcript
    ),
    # ?async=true image generations: generated, then (with `embed`) CLIP-embedded, then kept.
    "imagegen": Kind(_generated, next_stage=_embed_generated),
}


def _failed(job: Row, error: str) -> Finished:
    """A failed job's columns; its stored input is kept for a retry."""
    log.warning("job %s failed: %s", job.id, error)
    return {"status": "failed", "error": error}, []


class JobRunner:
    """Creates jobs, moves them on (submit, poll, finish) and takes webhooks; `prices`: USD a
    second on each worker type's GPUs, which finished parts' usage rows are priced at."""

    def __init__(
        self,
        engine: AsyncEngine,
        backend: InferenceBackend,
        storage: Storage,
        settings: Settings,
        prices: dict[str, float | None],
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.storage = storage
        self.settings = settings
        self.secret = settings.signing_key(keys.JOB_WEBHOOKS)
        # Where RunPod's webhooks reach this API: only with a URL and a secret to sign with.
        base = settings.webhook_base_url if self.secret else None
        self.webhook_base = base.rstrip("/") if base else None
        self.poll_every = WEBHOOK_FALLBACK_S if self.webhook_base else settings.job_poll_seconds
        self.prices = prices
        self._task: asyncio.Task | None = None

    # -- creating -------------------------------------------------------------------------
    async def create(
        self,
        caller: Caller,
        kind: str,
        payload: dict[str, Any],
        parts: list[tuple[str, dict[str, Any]]],
        idempotency_key: str | None,
        hashed: str,
    ) -> tuple[JobOut, bool]:
        """A new job with its parts, submitted at once; or, for a repeated Idempotency-Key,
        the job made the first time (and False)."""
        job_id = uuid.uuid4()
        now = datetime.now(UTC)
        values = {
            "id": job_id,
            "api_key_id": caller.key_id,
            "tenant": caller.tenant,
            "kind": kind,
            "status": "queued",
            "idempotency_key": idempotency_key,
            "request_hash": hashed,
            "payload": payload,
            "deadline_at": now + timedelta(seconds=self.settings.job_timeout_seconds),
            "check_at": now + timedelta(seconds=self.poll_every),
        }
        async with self.engine.begin() as conn:
            created = await conn.scalar(
                pg_insert(Job).values(values).on_conflict_do_nothing().returning(Job.id)
            )
            if created is not None:
                rows = [
                    {"job_id": job_id, "idx": i, "worker": w, "input": p, "status": "pending"}
                    for i, (w, p) in enumerate(parts)
                ]
                await conn.execute(insert(JobPart), rows)
        if created is None:  # another request with this key got there first
            existing = await replayed(self.engine, caller, idempotency_key, hashed)
            assert existing is not None
            return existing, False
        await self.advance(job_id)
        async with self.engine.connect() as conn:
            job = await job_out(conn, job_id)
        assert job is not None  # jobs are deleted only by retention, long after
        return job, True

    # -- moving on ------------------------------------------------------------------------
    def _webhook(self, job_id: uuid.UUID, part: int) -> str | None:
        if self.webhook_base is None or self.secret is None:
            return None
        return webhook.url(self.webhook_base, self.secret, job_id, part)

    async def advance(self, job_id: uuid.UUID, poll: bool = False) -> None:
        """Fail the job if past its deadline; submit its pending parts; with `poll`, ask the
        backend how its submitted parts stand."""
        async with self.engine.connect() as conn:
            job = (
                await conn.execute(select(Job.status, Job.deadline_at).where(Job.id == job_id))
            ).one_or_none()
            parts = (
                await conn.execute(
                    select(_PARTS)
                    .where(JobPart.job_id == job_id, JobPart.status != "done")
                    .order_by(JobPart.idx)
                )
            ).all()
        if job is None or job.status in FINAL:
            return
        if job.deadline_at < datetime.now(UTC):
            seconds = self.settings.job_timeout_seconds
            await self._fail(job_id, f"the job did not finish within {seconds:g} s")
            return
        for part in parts:
            if part.status == "pending":
                await self._submit(job_id, part)
            elif poll and part.runpod_id:
                state = await self.backend.job_state(part.worker, part.runpod_id)
                await self.record(job_id, part.idx, state)

    async def _submit(self, job_id: uuid.UUID, part: Row) -> None:
        job_input = await self._signed_urls(dict(part.input))
        try:
            runpod_id = await self.backend.submit(
                part.worker, job_input, self._webhook(job_id, part.idx)
            )
        except ApiError as exc:  # the poller tries again until the deadline
            log.warning("cannot submit part %s of job %s: %s", part.idx, job_id, exc.message)
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(JobPart)
                .where(
                    JobPart.job_id == job_id, JobPart.idx == part.idx, JobPart.status == "pending"
                )
                .values(status="submitted", runpod_id=runpod_id, attempts=JobPart.attempts + 1)
            )
            await conn.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(status="running", updated_at=func.now())
            )

    async def _signed_urls(self, job_input: dict[str, Any]) -> dict[str, Any]:
        """A part's stored-file keys as signed URLs, good until the job's deadline."""
        ttl, storage = int(self.settings.job_timeout_seconds), self.storage
        for key_field, url_field in (("audio_key", "audio_url"), ("image_key", "image_url")):
            if (key := job_input.pop(key_field, None)) is not None:
                job_input[url_field] = await asyncio.to_thread(storage.signed_url, key, ttl)
        if (keys := job_input.pop("upload_keys", None)) is not None:
            content_type = OUTPUT_TYPES[job_input["output_format"]][0]
            job_input["upload_urls"] = [
                await asyncio.to_thread(storage.signed_upload_url, key, ttl, content_type)
                for key in keys
            ]
        return job_input

    async def record(self, job_id: uuid.UUID, idx: int, state: QueuedJob) -> bool:
        """Take a part's state (from the webhook or a poll); finish the job when it was the
        last part. Returns whether anything changed: a repeated webhook changes nothing.
        A webhook can arrive before `_submit` has noted the RunPod id: it counts all the same
        (it is signed for this job and part)."""
        if state.state == "pending":
            return False
        values: dict[str, Any] = {}
        cleanup: list[str] = []
        more = False  # parts of a next stage to submit
        async with self.engine.begin() as conn:
            job = await _locked_job(conn, job_id)
            part = (
                await conn.execute(
                    select(_PARTS).where(JobPart.job_id == job_id, JobPart.idx == idx)
                )
            ).one_or_none()
            if job is None or job.status in FINAL or part is None or part.status == "done":
                return False
            this_part = (JobPart.job_id == job_id) & (JobPart.idx == idx)
            if state.state == "completed":
                await conn.execute(
                    update(JobPart).where(this_part).values(status="done", output=state.output)
                )
                await write_in(conn, [self._usage(job, part, state)])
                remaining = await conn.scalar(
                    select(func.count()).where(JobPart.job_id == job_id, JobPart.status != "done")
                )
                if remaining == 0:
                    values, cleanup, more = await self._next(conn, job)
            elif state.state == "gone" and part.attempts < MAX_ATTEMPTS:
                await conn.execute(  # submitted again below
                    update(JobPart).where(this_part).values(status="pending", runpod_id=None)
                )
            else:
                reason = state.error or f"the worker lost the job {MAX_ATTEMPTS} times"
                values, cleanup = _failed(job, f"part {idx}: {reason}")
            await conn.execute(
                update(Job).where(Job.id == job_id).values(updated_at=func.now(), **values)
            )
        await self._remove(cleanup)
        if state.state == "gone" or more:
            await self.advance(job_id)
        return True

    def _usage(self, job: Row, part: Row, state: QueuedJob) -> dict[str, Any]:
        """The usage row of a part the worker finished (its request id: the job's)."""
        return usage_row(
            job.tenant,
            job.api_key_id,
            f"job:{job.kind}",
            str(job.id),
            part.worker,
            self.backend.endpoint(part.worker),
            Charge(self.prices.get(part.worker)),
            state.output or {},
            state.delay_ms,
            state.execution_ms,
        )

    async def _next(self, conn: AsyncConnection, job: Row) -> tuple[dict, list[str], bool]:
        """With every part done: the next stage's parts added (and True), or the job's
        completed columns; and the objects to delete after commit."""
        outputs = list(
            (
                await conn.scalars(
                    select(JobPart.output).where(JobPart.job_id == job.id).order_by(JobPart.idx)
                )
            ).all()
        )
        kind = KINDS[job.kind]
        try:
            staged = kind.next_stage(job, outputs, self.settings)
            if staged is None:
                result, cleanup = await kind.finish(conn, job, outputs, self.settings)
        except ApiError as exc:
            return *_failed(job, exc.message), False
        if staged is not None:
            payload, parts = staged
            rows = [
                {"job_id": job.id, "idx": i, "worker": w, "input": p, "status": "pending"}
                for i, (w, p) in enumerate(parts, start=len(outputs))
            ]
            await conn.execute(insert(JobPart), rows)
            return {"payload": payload}, [], True
        # The outputs are in the result or the chunks now: do not keep them twice.
        await conn.execute(update(JobPart).where(JobPart.job_id == job.id).values(output=None))
        return {"status": "succeeded", "result": result, "error": None}, cleanup, False

    async def _fail(self, job_id: uuid.UUID, error: str) -> None:
        async with self.engine.begin() as conn:
            job = await _locked_job(conn, job_id)
            if job is None or job.status in FINAL:
                return
            values, cleanup = _failed(job, error)
            await conn.execute(
                update(Job).where(Job.id == job_id).values(updated_at=func.now(), **values)
            )
        await self._remove(cleanup)

    async def _remove(self, keys: list[str]) -> None:
        for key in keys:
            await asyncio.to_thread(self.storage.delete, key)

    # -- the poller -----------------------------------------------------------------------
    _DUE = text(
        "UPDATE jobs SET check_at = now() + make_interval(secs => :every)"
        " WHERE id IN (SELECT id FROM jobs WHERE status IN ('queued', 'running')"
        " AND check_at <= now() ORDER BY check_at LIMIT 20 FOR UPDATE SKIP LOCKED)"
        " RETURNING id"
    )

    async def tick(self) -> int:
        """Move on the jobs that are due (each instance takes its own); how many."""
        async with self.engine.begin() as conn:
            due = (await conn.scalars(self._DUE, {"every": self.poll_every})).all()
        for job_id in due:
            try:
                await self.advance(job_id, poll=True)
            except Exception:
                log.exception("job %s could not be moved on", job_id)
        return len(due)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except DatabaseUnavailable:  # keep going: it may be back at the next tick
                log.warning("the job poller cannot reach the database")
            except Exception:
                log.exception("the job poller failed")
            await asyncio.sleep(min(self.poll_every, self.settings.job_poll_seconds))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def ingest_later(
    runner: JobRunner,
    upload: Upload,
    caller: Caller,
    idempotency_key: str | None,
) -> JobOut:
    """Store and chunk `upload` now; embed and write it in a `document` job."""
    metadata = json.dumps(upload.metadata, sort_keys=True)
    hashed = request_hash(
        "document", upload.source_id, upload.title or "", upload.content_type, metadata, upload.data
    )
    if (earlier := await replayed(runner.engine, caller, idempotency_key, hashed)) is not None:
        return earlier
    prepared = await asyncio.to_thread(prepare, upload, runner.settings)
    batches = batched(prepared.texts, runner.settings.embed_batch_size)
    key = object_key(upload)
    payload = {
        "row": upload.row(prepared.title, key),
        "chunks": [[chunk.heading, chunk.content] for chunk in prepared.chunks],
        "batch_sizes": [len(batch) for batch in batches],
    }
    parts = [("embed", embed_job(batch)) for batch in batches]
    async with stored(runner.storage, key, upload):
        job, created = await runner.create(
            caller, "document", payload, parts, idempotency_key, hashed
        )
    if not created:  # an identical request made the job first: this copy is not needed
        await asyncio.to_thread(runner.storage.delete, key)
    return job


async def transcribe_later(
    runner: JobRunner,
    caller: Caller,
    form: TranscriptionForm,
    task: Task,
    data: bytes,
    idempotency_key: str | None,
) -> JobOut:
    """Store the audio now; transcribe it in a `transcribe` job (its result: verbose_json)."""
    hashed = request_hash("transcribe", task, form_summary(form), data)
    if (earlier := await replayed(runner.engine, caller, idempotency_key, hashed)) is not None:
        return earlier
    storage, _settings = runner.storage, runner.settings
    key = f"audio/{uuid.uuid4()}"
    await asyncio.to_thread(storage.put, key, data, audio_type(data))
    request_id = f"transcribe-{uuid.uuid4()}"
    part = transcription_job(form, task, {"audio_key": key}, request_id)
    payload = {"object_key": key, "task": task, "words": form.words}
    try:
        job, created = await runner.create(
            caller, "transcribe", payload, [("transcribe", part)], idempotency_key, hashed
        )
    except BaseException:
        await asyncio.to_thread(storage.delete, key)
        raise
    if not created:  # an identical request made the job first: this copy is not needed
        await asyncio.to_thread(storage.delete, key)
    return job


async def ingest_audio_later(
    runner: JobRunner, upload: Upload, caller: Caller, idempotency_key: str | None
) -> JobOut:
    """Store audio `upload` as a document's file now; transcribe it, then embed and write the
    transcript, in an `audio_document` job."""
    metadata = json.dumps(upload.metadata, sort_keys=True)
    hashed = request_hash(
        "audio_document", upload.source_id, upload.title or "", metadata, upload.data
    )
    if (earlier := await replayed(runner.engine, caller, idempotency_key, hashed)) is not None:
        return earlier
    key = f"documents/{uuid.uuid4()}{AUDIO_EXTENSIONS[upload.content_type]}"
    payload = {"row": upload.row(upload.title or upload.source_id, key), "stage": "transcribe"}
    storage = runner.storage
    async with stored(storage, key, upload):
        part = {
            "audio_key": key,
            "task": "transcribe",
            "vad_filter": True,  # a recording's silences hold nothing to search
            "request_id": f"document-{uuid.uuid4()}",
        }
        job, created = await runner.create(
            caller, "audio_document", payload, [("transcribe", part)], idempotency_key, hashed
        )
    if not created:  # an identical request made the job first: this copy is not needed
        await asyncio.to_thread(storage.delete, key)
    return job


async def generate_later(
    runner: JobRunner, caller: Caller, body: ImageGenerationIn, idempotency_key: str | None
) -> JobOut:
    """Generate `body`'s images in an `imagegen` job (CLIP-embedded after, with `embed`), by
    the stack's image model (a deployment's are generated while the request waits)."""
    if not is_stack_model(runner.settings, body.model):
        raise InvalidInput(
            f"model: async=true generates with {runner.settings.imagegen_model!r} only; leave "
            "model out, or generate without async"
        )
    hashed = request_hash("imagegen", body.model_dump_json())
    if (earlier := await replayed(runner.engine, caller, idempotency_key, hashed)) is not None:
        return earlier
    keys = image_keys(body)
    request_id = f"imagegen-{uuid.uuid4()}"
    part = generation_job(body, {"upload_keys": keys}, request_id)
    payload = {"request": body.model_dump(mode="json"), "keys": keys, "stage": "generate"}
    job, _created = await runner.create(
        caller, "imagegen", payload, [("imagegen", part)], idempotency_key, hashed
    )
    return job
