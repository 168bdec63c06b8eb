"""Asynchronous jobs on the RunPod backend (the emulator's real workers): completed by RunPod's
webhook calling the API served over HTTP, or by polling `/status` without one."""

import uuid

import pytest

from app.core import keys
from app.services.webhook import signature as webhook_signature
from tests.app.test_jobs import TEXTS, finished, sql
from tests.conftest import HMAC_SECRET, free_port, runpod_settings, serve_api, start_api

JOB_WEBHOOKS_KEY = keys.derive(HMAC_SECRET, keys.JOB_WEBHOOKS)


@pytest.fixture(scope="module")
async def served(database_url, emulator, tmp_path_factory):
    """The API over HTTP on the RunPod backend, with RunPod's webhooks pointed at it; the
    poller is slowed to a minute so only a webhook can finish a job quickly."""
    port = free_port()
    settings = runpod_settings(
        database_url,
        emulator,
        signing_secret=HMAC_SECRET,
        storage_dir=tmp_path_factory.mktemp("objects"),
        embed_batch_size=2,
        public_url=f"http://127.0.0.1:{port}",
        webhook_base_url=f"http://127.0.0.1:{port}",
        job_poll_seconds=60,
    )
    async for api in serve_api(settings):
        yield api


async def test_the_webhook_completes_a_job_once(served):
    created = (await served.post("/v1/jobs", json={"kind": "embed", "texts": TEXTS})).json()
    job = await finished(served, created["job_id"], timeout_s=30)  # well before any poll
    assert job["status"] == "succeeded" and len(job["result"]["embeddings"]) == 5
    [(runpod_id,)] = await sql(
        served,
        "SELECT runpod_id FROM job_parts WHERE job_id = :id AND idx = 0",
        id=created["job_id"],
    )
    signature = webhook_signature(JOB_WEBHOOKS_KEY, created["job_id"], 0)
    url = f"/internal/runpod-webhook/{created['job_id']}?part=0&signature={signature}"
    repeat = {"id": runpod_id, "status": "COMPLETED", "output": {"embeddings": [[0.0] * 384]}}
    again = await served.client.post(url, json=repeat)
    assert again.status_code == 200 and again.json() == {"ok": True, "changed": False}
    assert (await served.get(f"/v1/jobs/{created['job_id']}")).json() == job


async def test_webhooks_with_a_bad_signature_change_nothing(served):
    await served.app.state.jobs.stop()
    try:
        created = (await served.post("/v1/jobs", json={"kind": "embed", "texts": ["x"]})).json()
        job_id = created["job_id"]
        forged = {"id": "any", "status": "FAILED", "error": "forged"}
        good = webhook_signature(JOB_WEBHOOKS_KEY, job_id, 0)
        for query in (
            f"part=0&signature={'0' * 64}",
            f"part=1&signature={good}",
            "part=0&signature=" + "%C3%A9" * 64,  # non-ASCII: a 401, not a 500
        ):
            response = await served.client.post(
                f"/internal/runpod-webhook/{job_id}?{query}", json=forged
            )
            assert response.status_code == 401
        malformed = await served.client.post(
            f"/internal/runpod-webhook/{job_id}?part=0&signature={good}", content=b"[1]"
        )
        assert malformed.status_code == 422
        missing = await served.client.post(f"/internal/runpod-webhook/{job_id}?part=0", json={})
        assert missing.status_code == 422
        job = await finished(served, job_id, timeout_s=30)
        assert job["status"] == "succeeded"  # the forged failure was not taken
    finally:
        served.app.state.jobs.start()


async def test_without_a_webhook_jobs_are_polled(database_url, emulator, tmp_path):
    settings = runpod_settings(
        database_url, emulator, storage_dir=tmp_path, embed_batch_size=2, job_poll_seconds=0.2
    )
    async for api in start_api(settings):
        created = (await api.post("/v1/jobs", json={"kind": "embed", "texts": TEXTS})).json()
        job = await finished(api, created["job_id"], timeout_s=30)
    assert job["status"] == "succeeded" and len(job["result"]["embeddings"]) == 5


def test_webhook_signature_binds_job_and_part():
    job = uuid.uuid4()
    assert webhook_signature("s", job, 0) != webhook_signature("s", job, 1)
    assert webhook_signature("s", job, 0) != webhook_signature("t", job, 0)
