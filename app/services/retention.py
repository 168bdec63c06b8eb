"""Retention: documents and images whose upload is older than RETENTION_RAW_DAYS are
deleted, stored file first and then the row (with a document's chunks); audio has its own
days: a transcript's raw audio is replaced by the transcript's text after RETENTION_AUDIO_DAYS,
and transcripts (audio documents, and the results of transcription jobs) are deleted after
RETENTION_TRANSCRIPT_DAYS. Stored files that no row names (an upload that died between its
file and its row) are swept once they are older than ORPHAN_GRACE, which an upload in flight
never is; and the deployments of deleted tenants (every key of theirs revoked) are deleted:
marked `deleting`, which the API's runner finishes at RunPod; their RunPod keys are forgotten
once none of those deployments is left."""

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import ApiKey, Chunk, Deployment, Document, Image, Job, TenantRunPodKey
from app.services.deployments import transition
from app.services.jobs import KINDS
from app.services.uploads import delete_upload
from app.storage import Storage

ORPHAN_GRACE = timedelta(hours=1)
PREFIXES = ("documents/", "images/", "audio/")  # where files are kept


@dataclass(frozen=True)
class Days:
    """How many days each kind of data is kept."""

    raw: int  # uploads
    audio: int  # a transcript's raw audio
    transcript: int  # audio documents and transcription jobs


async def apply_retention(
    engine: AsyncEngine, storage: Storage, days: Days, dry_run: bool, now: datetime | None = None
) -> list[str]:
    """Delete (or with `dry_run`, list) what was last uploaded longer ago than its `days`;
    returns one line per upload and a summary for each kind."""
    now = now or datetime.now(UTC)
    verb = "would delete" if dry_run else "deleted"
    lines = await _audio_to_transcripts(engine, storage, now - timedelta(days=days.audio), dry_run)
    is_transcript = Document.audio_seconds.is_not(None)
    kinds: list[tuple[type[Document] | type[Image], int, Any, str]] = [
        (Document, days.raw, ~is_transcript, "document"),
        (Document, days.transcript, is_transcript, "transcript"),
        (Image, days.raw, true(), "image"),
    ]
    for model, days_kept, clause, kind in kinds:
        cutoff = now - timedelta(days=days_kept)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(model.id, model.source_id, model.updated_at)
                    .where(model.updated_at < cutoff, clause)
                    .order_by(model.updated_at)
                )
            ).all()
        for row in rows:
            if not dry_run:
                await delete_upload(engine, storage, model, row.id, None)
            lines.append(
                f"{verb} {kind} {row.id} (source_id {row.source_id!r}, "
                f"uploaded {row.updated_at:%Y-%m-%d %H:%M} UTC)"
            )
        lines.append(f"{verb} {len(rows)} {kind}s uploaded before {cutoff:%Y-%m-%d %H:%M} UTC")
    lines += await _transcription_jobs(engine, now - timedelta(days=days.transcript), dry_run)
    lines += await _failed_jobs(engine, storage, now - timedelta(days=days.raw), dry_run)
    lines += await sweep_orphans(engine, storage, dry_run, now)
    lines += await end_deployments_of_deleted_tenants(engine, dry_run)
    return lines + await forget_runpod_keys_of_deleted_tenants(engine, dry_run)


async def _audio_to_transcripts(
    engine: AsyncEngine, storage: Storage, cutoff: datetime, dry_run: bool
) -> list[str]:
    """Replace (or list) the raw audio of transcripts uploaded before `cutoff` by the
    transcript's text: the document and its chunks stay."""
    verb = "would replace" if dry_run else "replaced"
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(Document.id, Document.source_id, Document.object_key)
                .where(
                    Document.audio_seconds.is_not(None),
                    Document.content_type.startswith("audio/"),
                    Document.updated_at < cutoff,
                )
                .order_by(Document.updated_at)
            )
        ).all()
    lines = []
    for row in rows:
        if not dry_run:
            await _replace_by_transcript(engine, storage, row.id, row.object_key)
        lines.append(f"{verb} the audio of document {row.id} ({row.source_id!r}) by its text")
    when = f"{cutoff:%Y-%m-%d %H:%M} UTC"
    return [*lines, f"{verb} the audio of {len(rows)} transcripts uploaded before {when}"]


async def _replace_by_transcript(
    engine: AsyncEngine, storage: Storage, document_id: uuid.UUID, audio_key: str
) -> None:
    """The transcript's text stored and named by the row, then the audio deleted: a failure
    part-way leaves the audio named, or a text file the orphan sweep removes."""
    async with engine.connect() as conn:
        passages = (
            await conn.scalars(
                select(Chunk.content).where(Chunk.document_id == document_id).order_by(Chunk.ord)
            )
        ).all()
    text = "\n\n".join(passages).encode()
    key = f"documents/{uuid.uuid4()}.txt"
    await asyncio.to_thread(storage.put, key, text, "text/plain")
    async with engine.begin() as conn:
        await conn.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(object_key=key, content_type="text/plain", size_bytes=len(text))
        )
    await asyncio.to_thread(storage.delete, audio_key)


async def _failed_jobs(
    engine: AsyncEngine, storage: Storage, cutoff: datetime, dry_run: bool
) -> list[str]:
    """Delete (or list) the jobs that failed before `cutoff`, with the stored input they kept
    for a retry."""
    async with engine.connect() as conn:
        jobs = (
            await conn.execute(
                select(Job.__table__).where(Job.status == "failed", Job.updated_at < cutoff)
            )
        ).all()
    verb = "would delete" if dry_run else "deleted"
    lines = []
    for job in jobs:
        if not dry_run:
            for key in KINDS[job.kind].stored_input(job):
                await asyncio.to_thread(storage.delete, key)
            async with engine.begin() as conn:
                await conn.execute(delete(Job).where(Job.id == job.id))
        lines.append(f"{verb} failed job {job.id} ({job.kind}): {job.error}")
    when = f"{cutoff:%Y-%m-%d %H:%M} UTC"
    return [*lines, f"{verb} {len(jobs)} jobs that failed before {when}, with their stored input"]


async def _transcription_jobs(engine: AsyncEngine, cutoff: datetime, dry_run: bool) -> list[str]:
    """Delete (or count) the transcription jobs, whose results are transcripts, that ended
    before `cutoff`."""
    old = (Job.kind == "transcribe") & Job.status.in_(("succeeded", "failed"))
    old &= Job.updated_at < cutoff
    async with engine.begin() as conn:
        if dry_run:
            count = await conn.scalar(select(func.count()).where(old))
        else:
            count = len((await conn.execute(delete(Job).where(old).returning(Job.id))).all())
    verb = "would delete" if dry_run else "deleted"
    return [f"{verb} {count} transcription jobs that ended before {cutoff:%Y-%m-%d %H:%M} UTC"]


async def sweep_orphans(
    engine: AsyncEngine, storage: Storage, dry_run: bool, now: datetime | None = None
) -> list[str]:
    """Delete (or list) the stored files older than ORPHAN_GRACE that nothing names: no
    document or image row, and no job that may still read it."""
    cutoff = (now or datetime.now(UTC)) - ORPHAN_GRACE
    verb = "would delete" if dry_run else "deleted"
    async with engine.connect() as conn:
        named = set((await conn.scalars(select(Document.object_key))).all())
        named |= set((await conn.scalars(select(Image.object_key))).all())
        jobs = (await conn.execute(select(Job.__table__).where(Job.status != "succeeded"))).all()
    named |= {key for job in jobs for key in KINDS[job.kind].stored_input(job)}
    lines = []
    for prefix in PREFIXES:
        listed = await asyncio.to_thread(list, storage.listed(prefix))
        orphans = sorted(key for key, written in listed if written < cutoff and key not in named)
        for key in orphans:
            if not dry_run:
                await asyncio.to_thread(storage.delete, key)
            lines.append(f"{verb} {key}: nothing names it")
        lines.append(f"{verb} {len(orphans)} files under {prefix} that nothing names")
    return lines


async def end_deployments_of_deleted_tenants(engine: AsyncEngine, dry_run: bool) -> list[str]:
    """Delete (or list) the deployments of tenants no active key belongs to any more."""
    verb = "would delete" if dry_run else "deleted"
    active_key = exists().where(ApiKey.tenant == Deployment.tenant, ApiKey.revoked_at.is_(None))
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(Deployment.id, Deployment.name, Deployment.tenant)
                .where(Deployment.status.not_in(("deleting", "deleted")), ~active_key)
                .order_by(Deployment.created_at)
            )
        ).all()
        lines = []
        for row in rows:
            if not dry_run:
                await transition(
                    conn,
                    row.id,
                    "deleting",
                    "retention: its tenant has no active API key",
                    check_at=func.now(),
                )
            lines.append(f"{verb} deployment {row.id} ({row.name!r}, tenant {row.tenant!r})")
    lines.append(f"{verb} {len(rows)} deployments of tenants with no active API key")
    return lines


async def forget_runpod_keys_of_deleted_tenants(engine: AsyncEngine, dry_run: bool) -> list[str]:
    """Forget (or list) the RunPod keys of tenants no active key belongs to any more, once no
    deployment of theirs is left in their account (its removal needs the key)."""
    verb = "would forget" if dry_run else "forgot"
    tenant = TenantRunPodKey.tenant
    active_key = exists().where(ApiKey.tenant == tenant, ApiKey.revoked_at.is_(None))
    in_account = exists().where(
        Deployment.tenant == tenant,
        Deployment.own_account,
        Deployment.status.not_in(("failed", "deleted")),
    )
    async with engine.begin() as conn:
        tenants = (await conn.scalars(select(tenant).where(~active_key, ~in_account))).all()
        if tenants and not dry_run:
            await conn.execute(delete(TenantRunPodKey).where(tenant.in_(tenants)))
    return [
        f"{verb} the RunPod key of tenant {name!r}: it has no active API key" for name in tenants
    ]
