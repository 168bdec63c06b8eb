"""Asynchronous jobs: text embeddings in batches and `?async=true` uploads, completed by
polling (the local backend, the emulator without a webhook) or by RunPod's webhook (the
emulator calling the API served over HTTP); idempotency, restarts, deadlines and refusals."""

import asyncio
import uuid

import pytest
from sqlalchemy import text

from app.services.embedding import embed_texts
from tests.app.test_cli import run_cli
from tests.conftest import (
    HMAC_SECRET,
    controlled_backend,
    make_settings,
    start_api,
)

TEXTS = ["Tides follow the Moon.", "Green tea is not oxidised.", "Castling moves the king."]
TEXTS += ["Bees dance to point at flowers.", "Glass can be recycled endlessly."]


def job_settings(database_url: str, tmp_path, **overrides):
    return make_settings(
        database_url,
        signing_secret=HMAC_SECRET,
        storage_dir=tmp_path,
        embed_batch_size=2,
        job_poll_seconds=0.2,
        **overrides,
    )


@pytest.fixture(scope="module")
async def api(database_url, local_backend, tmp_path_factory):
    settings = job_settings(database_url, tmp_path_factory.mktemp("objects"))
    async for started in start_api(settings, local_backend):
        yield started


async def finished(api, job_id: str, timeout_s: float = 60) -> dict:
    async with asyncio.timeout(timeout_s):
        while True:
            job = (await api.get(f"/v1/jobs/{job_id}")).json()
            if job["status"] in ("succeeded", "failed"):
                return job
            await asyncio.sleep(0.1)


async def sql(api, statement: str, **params):
    async with api.app.state.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return result.all() if result.returns_rows else None


async def test_embed_job_runs_in_batches_and_matches_the_sync_embeddings(api, local_backend):
    response = await api.post("/v1/jobs", json={"kind": "embed", "texts": TEXTS})
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["status"] in ("queued", "running") and created["parts"] == 3
    job = await finished(api, created["job_id"])
    assert job["status"] == "succeeded" and job["parts_done"] == 3 and job["error"] is None
    result = job["result"]
    assert result["dim"] == 384 and result["model"] == "all-MiniLM-L6-v2"
    direct = await embed_texts(local_backend, api.app.state.settings, TEXTS, "direct")
    assert len(result["embeddings"]) == 5
    for got, expected in zip(result["embeddings"], direct, strict=True):
        assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-4


async def test_idempotency_key_returns_the_first_job(api):
    body = {"kind": "embed", "texts": ["once"]}
    headers = {"Idempotency-Key": "k-1"}
    first = await api.post("/v1/jobs", json=body, headers=headers)
    again = await api.post("/v1/jobs", json=body, headers=headers)
    assert again.json()["job_id"] == first.json()["job_id"]
    other = await api.post("/v1/jobs", json={"kind": "embed", "texts": ["twice"]}, headers=headers)
    assert other.status_code == 422 and "different request" in other.json()["error"]["message"]
    fresh = await api.post("/v1/jobs", json=body)
    assert fresh.json()["job_id"] != first.json()["job_id"]
    [(count,)] = await sql(api, "SELECT count(*) FROM jobs WHERE idempotency_key = 'k-1'")
    assert count == 1


async def test_async_upload_is_written_by_its_job(api):
    document = "# Rollout\n" + " ".join(f"Step {i} ships the canary release." for i in range(80))
    body = {"source_id": "rollout", "text": document}
    response = await api.post("/v1/documents?async=true", json=body)
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["kind"] == "document" and created["parts"] >= 2
    job = await finished(api, created["job_id"])
    assert job["status"] == "succeeded", job
    stored = (await api.get(f"/v1/documents/{job['result']['document_id']}")).json()
    assert stored["chunks"] == job["result"]["chunks"] >= 3 and stored["title"] == "Rollout"
    hits = (await api.get("/v1/search", params={"q": "canary release step"})).json()["hits"]
    assert hits[0]["source_id"] == "rollout"


async def test_a_restart_resubmits_lost_parts(api, local_backend, database_url, tmp_path):
    # A job submitted, then the process that ran it gone: its backend forgets the job.
    runner = api.app.state.jobs
    await runner.stop()  # nothing polls while the job is "lost"
    try:
        created = (await api.post("/v1/jobs", json={"kind": "embed", "texts": TEXTS[:2]})).json()
        await asyncio.sleep(0.5)
        local_backend._queued.clear()  # what a restart loses
        settings = api.app.state.settings.model_copy()
        async for _restarted in start_api(settings, local_backend):  # a new instance
            job = await finished(api, created["job_id"])  # the owner's view
        assert job["status"] == "succeeded" and len(job["result"]["embeddings"]) == 2
        [(attempts,)] = await sql(
            api, "SELECT attempts FROM job_parts WHERE job_id = :id", id=created["job_id"]
        )
        assert attempts == 2  # submitted again, once
    finally:
        runner.start()


async def test_a_job_past_its_deadline_fails_visibly(api):
    await api.app.state.jobs.stop()
    try:
        created = (await api.post("/v1/jobs", json={"kind": "embed", "texts": ["late"]})).json()
        await sql(
            api,
            "UPDATE jobs SET deadline_at = now() - interval '1 s', check_at = now() WHERE id = :id",
            id=created["job_id"],
        )
        await api.app.state.jobs.tick()
    finally:
        api.app.state.jobs.start()
    job = (await api.get(f"/v1/jobs/{created['job_id']}")).json()
    assert job["status"] == "failed" and "did not finish within 3600 s" in job["error"]


async def test_a_part_lost_too_often_fails_the_job(api, local_backend):
    await api.app.state.jobs.stop()
    try:
        created = (await api.post("/v1/jobs", json={"kind": "embed", "texts": ["lost"]})).json()
        local_backend._queued.clear()
        await sql(api, "UPDATE job_parts SET attempts = 3 WHERE job_id = :id", id=created["job_id"])
        await sql(api, "UPDATE jobs SET check_at = now() WHERE id = :id", id=created["job_id"])
        await api.app.state.jobs.tick()
    finally:
        api.app.state.jobs.start()
    job = (await api.get(f"/v1/jobs/{created['job_id']}")).json()
    assert job["status"] == "failed" and "lost the job 3 times" in job["error"]


async def test_a_failed_document_job_writes_nothing_and_is_retried(
    api, local_backend, database_url, tmp_path
):
    """The controlled worker answers no embeddings: the job fails, writing no document but
    keeping its upload; `python -m app jobs retry` queues it again, and an API whose worker
    answers finishes it (the dead letter replayed)."""
    # (The module's API stops polling meanwhile: it would take over the part as lost.)
    await api.app.state.jobs.stop()
    settings = job_settings(database_url, tmp_path)
    try:
        async for broken in start_api(settings, controlled_backend()):
            body = {"source_id": "doomed", "text": "Some text."}
            created = (await broken.post("/v1/documents?async=true", json=body)).json()
            job = await finished(broken, created["job_id"])
    finally:
        api.app.state.jobs.start()
    assert job["status"] == "failed" and "wrong shape" in job["error"]
    assert [p.name for p in tmp_path.rglob("*.md")]  # kept for a retry
    assert await sql(api, "SELECT id FROM documents WHERE source_id = 'doomed'") == []

    cli = {"DATABASE_URL": database_url, "STORAGE_DIR": str(tmp_path)}
    nothing = await asyncio.to_thread(run_cli, "jobs", "retry", **cli)
    assert nothing.returncode != 0 and "--failed" in nothing.stderr
    unknown = await asyncio.to_thread(run_cli, "jobs", "retry", str(uuid.uuid4()), **cli)
    assert "no failed job has this id" in unknown.stdout
    retried = await asyncio.to_thread(run_cli, "jobs", "retry", "--failed", **cli)
    assert f"job {created['job_id']} (document) queued again" in retried.stdout, retried.stderr
    async for _working in start_api(settings, local_backend):
        for _ in range(300):
            if (await sql(api, STATUS, id=created["job_id"]))[0][0] == "succeeded":
                break
            await asyncio.sleep(0.2)
    assert await sql(api, "SELECT title FROM documents WHERE source_id = 'doomed'") == [("doomed",)]
    again = await asyncio.to_thread(run_cli, "jobs", "retry", created["job_id"], **cli)
    assert "no failed job has this id" in again.stdout  # it succeeded: nothing to replay


STATUS = "SELECT status FROM jobs WHERE id = :id"


async def test_jobs_are_private_to_their_key_and_bad_input_is_refused(api):
    created = (await api.post("/v1/jobs", json={"kind": "embed", "texts": ["mine"]})).json()
    async for second in start_api(api.app.state.settings.model_copy(), api.app.state.backend):
        assert (await second.get(f"/v1/jobs/{created['job_id']}")).status_code == 404
    assert (await api.get(f"/v1/jobs/{uuid.uuid4()}")).status_code == 404
    for body, words in [
        ({"kind": "embed", "texts": []}, "texts"),
        ({"kind": "embed", "texts": [""]}, "texts"),
        ({"kind": "train", "texts": ["x"]}, "kind"),
        ({"kind": "embed", "texts": ["x"] * 10_001}, "texts"),
    ]:
        response = await api.post("/v1/jobs", json=body)
        assert response.status_code == 422 and words in response.json()["error"]["message"]
    long_key = {"Idempotency-Key": "k" * 201}
    response = await api.post("/v1/jobs", json={"kind": "embed", "texts": ["x"]}, headers=long_key)
    assert response.status_code == 422
