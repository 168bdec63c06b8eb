"""Retention: documents and images whose upload is older than RETENTION_RAW_DAYS are
deleted, stored file first and then the row (with a document's chunks); stored files that no
row names (an upload that died between its file and its row) are swept once they are older
than ORPHAN_GRACE, which an upload in flight never is; and the deployments of deleted tenants
(every key of theirs revoked) are deleted: marked `deleting`, which the API's runner finishes
at RunPod."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import ApiKey, Deployment, Document, Image
from app.services.deployments import transition
from app.services.uploads import delete_upload
from app.storage import Storage

ORPHAN_GRACE = timedelta(hours=1)
PREFIXES: dict[type[Document] | type[Image], str] = {
    Document: "documents/",
    Image: "images/",
}  # where each kind's files are kept


async def apply_retention(
    engine: AsyncEngine, storage: Storage, days: int, dry_run: bool, now: datetime | None = None
) -> list[str]:
    """Delete (or with `dry_run`, list) what was last uploaded more than `days` ago; returns
    one line per upload and a summary."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    verb = "would delete" if dry_run else "deleted"
    lines = []
    for model in (Document, Image):
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(model.id, model.source_id, model.updated_at)
                    .where(model.updated_at < cutoff)
                    .order_by(model.updated_at)
                )
            ).all()
        kind = model.__name__.lower()
        for row in rows:
            if not dry_run:
                await delete_upload(engine, storage, model, row.id, None)
            lines.append(
                f"{verb} {kind} {row.id} (source_id {row.source_id!r}, "
                f"uploaded {row.updated_at:%Y-%m-%d %H:%M} UTC)"
            )
        lines.append(f"{verb} {len(rows)} {kind}s uploaded before {cutoff:%Y-%m-%d %H:%M} UTC")
    lines += await sweep_orphans(engine, storage, dry_run, now)
    return lines + await end_deployments_of_deleted_tenants(engine, dry_run)


async def sweep_orphans(
    engine: AsyncEngine, storage: Storage, dry_run: bool, now: datetime | None = None
) -> list[str]:
    """Delete (or list) the stored files older than ORPHAN_GRACE that no row names."""
    cutoff = (now or datetime.now(UTC)) - ORPHAN_GRACE
    verb = "would delete" if dry_run else "deleted"
    lines = []
    for model, prefix in PREFIXES.items():
        listed = await asyncio.to_thread(list, storage.listed(prefix))
        async with engine.connect() as conn:
            named = set((await conn.scalars(select(model.object_key))).all())
        orphans = sorted(key for key, written in listed if written < cutoff and key not in named)
        for key in orphans:
            if not dry_run:
                await asyncio.to_thread(storage.delete, key)
            lines.append(f"{verb} {key}: no {model.__name__.lower()} names it")
        lines.append(f"{verb} {len(orphans)} files under {prefix} that no row names")
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
