"""Failed jobs queued again: `python -m app jobs retry ID|--failed`, the dead letters replayed.
A failed job keeps its stored input (app.services.jobs) until retention deletes it."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.models import Job, JobPart
from app.services.jobs import KINDS
from app.storage import Storage


async def _parts_again(conn: AsyncConnection, job_id: uuid.UUID) -> None:
    """The parts of a failed job to submit again: those not done, else (their answers were
    refused) those of its last stage, the parts on its last part's worker."""
    afresh = {"status": "pending", "runpod_id": None, "attempts": 0, "output": None}
    of_job = JobPart.job_id == job_id
    again = await conn.execute(
        update(JobPart).where(of_job, JobPart.status != "done").values(afresh)
    )
    if again.rowcount == 0:
        last = select(JobPart.worker).where(of_job).order_by(JobPart.idx.desc()).limit(1)
        await conn.execute(
            update(JobPart).where(of_job, JobPart.worker == last.scalar_subquery()).values(afresh)
        )


async def _in_storage(storage: Storage, key: str) -> bool:
    folder = key.rsplit("/", 1)[0] + "/"
    listed = await asyncio.to_thread(list, storage.listed(folder))
    return any(found == key for found, _ in listed)


async def retry(
    engine: AsyncEngine, storage: Storage, job_ids: list[uuid.UUID] | None, timeout_s: float
) -> list[str]:
    """Queue failed jobs again (those of `job_ids`, or every failed one), to finish within
    `timeout_s` from now: the API's poller submits afresh the parts that failed or, when the
    parts' answers were refused, those of the job's last stage. A job whose stored input is
    gone is left as it is. One line for each job."""
    query = select(Job.__table__).where(Job.status == "failed").order_by(Job.updated_at)
    if job_ids is not None:
        query = query.where(Job.id.in_(job_ids))
    async with engine.connect() as conn:
        jobs = (await conn.execute(query)).all()
    found = {job.id for job in jobs}
    lines = [f"job {i}: no failed job has this id" for i in job_ids or [] if i not in found]
    for job in jobs:
        gone = [
            key for key in KINDS[job.kind].stored_input(job) if not await _in_storage(storage, key)
        ]
        if gone:
            lines.append(f"job {job.id}: not retried, its stored input {gone[0]} is gone")
            continue
        async with engine.begin() as conn:
            await _parts_again(conn, job.id)
            deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
            await conn.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == "failed")
                .values(
                    status="queued",
                    error=None,
                    deadline_at=deadline,
                    check_at=func.now(),
                    updated_at=func.now(),
                )
            )
        lines.append(f"job {job.id} ({job.kind}) queued again; it had failed: {job.error}")
    return lines
