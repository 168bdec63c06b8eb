"""Lists of a tenant's documents, images, jobs and deployments, newest first, a page at a
time: the cursor is where the last page ended (its creation time and id), so rows added or
replaced meanwhile neither repeat nor go missing."""

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.errors import InvalidInput
from app.models import Deployment, Document, Image, Job, JobPart
from app.schemas import DeploymentSummary, JobSummary, Page, UploadOut


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created_at), uuid.UUID(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("cursor: not one this API gave (use next_cursor as it is)") from None


def _page(statement: Select, model: Any, limit: int, cursor: str | None) -> Select:
    """`statement` newest first, after `cursor`, one row more than a page (to know if another
    page follows)."""
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        statement = statement.where(
            or_(
                model.created_at < created_at,
                and_(model.created_at == created_at, model.id < row_id),
            )
        )
    return statement.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)


async def list_uploads(
    engine: AsyncEngine,
    model: type[Document | Image],
    tenant: str,
    limit: int,
    cursor: str | None,
    source_id_prefix: str | None,
) -> Page[UploadOut]:
    columns = [c for c in model.__table__.c if c.name not in ("embedding", "tenant")]
    statement = select(*columns).where(model.tenant == tenant)
    if source_id_prefix:
        statement = statement.where(model.source_id.startswith(source_id_prefix, autoescape=True))
    async with engine.connect() as conn:
        rows = (await conn.execute(_page(statement, model, limit, cursor))).all()
    items = [UploadOut.model_validate(row._mapping) for row in rows[:limit]]
    return Page(items=items, next_cursor=_next(rows, limit))


async def list_jobs(
    engine: AsyncEngine, tenant: str, limit: int, cursor: str | None, status: str | None
) -> Page[JobSummary]:
    done = func.count(JobPart.idx).filter(JobPart.status == "done")
    statement = (
        select(*Job.__table__.c, done.label("parts_done"), func.count(JobPart.idx).label("parts"))
        .outerjoin(JobPart, JobPart.job_id == Job.id)
        .where(Job.tenant == tenant)
        .group_by(Job.id)
    )
    if status:
        statement = statement.where(Job.status == status)
    async with engine.connect() as conn:
        rows = (await conn.execute(_page(statement, Job, limit, cursor))).all()
    items = [JobSummary(job_id=row.id, **row._mapping) for row in rows[:limit]]
    return Page(items=items, next_cursor=_next(rows, limit))


async def list_deployments(
    engine: AsyncEngine, tenant: str, limit: int, cursor: str | None
) -> Page[DeploymentSummary]:
    columns = [getattr(Deployment, name) for name in DeploymentSummary.model_fields]
    statement = select(*columns).where(Deployment.tenant == tenant, Deployment.status != "deleted")
    async with engine.connect() as conn:
        rows = (await conn.execute(_page(statement, Deployment, limit, cursor))).all()
    items = [DeploymentSummary.model_validate(row._mapping) for row in rows[:limit]]
    return Page(items=items, next_cursor=_next(rows, limit))


def _next(rows: Sequence[Row], limit: int) -> str | None:
    """The cursor after a page: the last row's, when `_page`'s one row more came back."""
    if len(rows) <= limit:
        return None
    return encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id)
