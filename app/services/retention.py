"""Retention: documents and images whose upload is older than RETENTION_RAW_DAYS are
deleted, stored file first and then the row (with a document's chunks); and stored files that
no row names (an upload that died between its file and its row) are swept once they are older
than ORPHAN_GRACE, which an upload in flight never is."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import Document, Image
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
    return lines + await sweep_orphans(engine, storage, dry_run, now)


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
