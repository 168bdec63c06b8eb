"""`python -m app retention [--dry-run]`: uploads older than RETENTION_RAW_DAYS go, with their
rows, chunks and stored files; newer ones stay; deleted tenants' deployments go."""

import asyncio
import os
import time
import uuid

import pytest
from sqlalchemy import text

from app.services.api_keys import create_api_key, revoke_api_key
from app.storage import ObjectNotFound
from tests.app.test_cli import run_cli


async def scalar(api, query: str, **params):
    async with api.app.state.engine.begin() as conn:
        return await conn.scalar(text(query), params)


async def execute(api, statement: str, **params) -> None:
    async with api.app.state.engine.begin() as conn:
        await conn.execute(text(statement), params)


@pytest.fixture
async def uploads(api):
    """An old and a new document (through the API), and an old image row with its file."""
    ids = {}
    for source_id in ("old-doc", "new-doc"):
        body = {"source_id": source_id, "text": f"The {source_id} text."}
        ids[source_id] = (await api.post("/v1/documents", json=body)).json()["id"]
    ids["old-image"] = str(uuid.uuid4())
    api.storage.put("images/old.png", b"png bytes", "image/png")
    await execute(
        api,
        "INSERT INTO images (id, tenant, source_id, title, content_type, object_key,"
        " size_bytes, metadata, embedding) VALUES (:id, 'default', 'old-image', 't',"
        " 'image/png', 'images/old.png', 9, '{}', CAST(:vector AS vector))",
        id=ids["old-image"],
        vector=str([1.0] + [0.0] * 511),
    )
    for table, key in (("documents", "old-doc"), ("images", "old-image")):
        await execute(
            api,
            f"UPDATE {table} SET updated_at = now() - interval '31 days' WHERE id = :id",  # noqa: S608
            id=ids[key],
        )
    return ids


async def retention(api, *args: str, days: str = "30"):
    """The command, run in a thread: the API's runner shares this event loop and must go on
    (a row its claim has locked when the loop stops would stay locked, and the command wait)."""
    settings = api.app.state.settings
    return await asyncio.to_thread(
        run_cli,
        "retention",
        *args,
        DATABASE_URL=settings.database_url.get_secret_value(),
        STORAGE_DIR=str(settings.storage_dir),
        RETENTION_RAW_DAYS=days,
    )


async def test_dry_run_lists_and_keeps_then_retention_deletes(api, uploads):
    keys = {
        name: await scalar(api, f"SELECT object_key FROM {table} WHERE id = :id", id=uploads[name])  # noqa: S608
        for name, table in (("old-doc", "documents"), ("new-doc", "documents"))
    }
    dry = await retention(api, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would delete document {uploads['old-doc']} (source_id 'old-doc'" in dry.stdout
    assert f"would delete image {uploads['old-image']}" in dry.stdout
    assert "would delete 1 documents uploaded before" in dry.stdout
    assert "new-doc" not in dry.stdout
    assert await scalar(api, "SELECT count(*) FROM documents") == 2  # nothing gone

    done = await retention(api)
    assert done.returncode == 0, done.stderr
    assert "deleted 1 documents" in done.stdout and "deleted 1 images" in done.stdout
    remaining = await scalar(api, "SELECT array_agg(source_id) FROM documents")
    assert remaining == ["new-doc"]
    assert await scalar(api, "SELECT count(*) FROM images") == 0
    orphans = "SELECT count(*) FROM chunks WHERE document_id = :id"
    assert await scalar(api, orphans, id=uploads["old-doc"]) == 0
    for path in (keys["old-doc"], "images/old.png"):
        with pytest.raises(ObjectNotFound):
            api.storage.get(path)
    assert api.storage.get(keys["new-doc"]) == b"The new-doc text."

    again = await retention(api)  # nothing left to do is not an error
    assert again.returncode == 0 and "deleted 0 documents" in again.stdout


async def test_retention_under_a_day_is_refused(api):
    result = await retention(api, days="0")
    assert result.returncode != 0
    assert "retention_raw_days" in result.stderr


async def test_files_no_row_names_are_swept_once_past_the_grace(api, uploads):
    """A file left by an upload that died between its file and its row: retention removes it
    once it is older than an hour; a younger one may be an upload in flight, and stays."""
    for key in ("documents/lost.md", "images/lost.png", "documents/in-flight.md"):
        api.storage.put(key, b"orphan", "application/octet-stream")
    two_hours_ago = time.time() - 7200
    for key in ("documents/lost.md", "images/lost.png"):
        os.utime(api.storage.root / key, (two_hours_ago, two_hours_ago))
    tracked = await scalar(
        api, "SELECT object_key FROM documents WHERE id = :id", id=uploads["new-doc"]
    )
    os.utime(api.storage.root / tracked, (two_hours_ago, two_hours_ago))  # old, but named

    dry = await retention(api, "--dry-run")
    assert "would delete documents/lost.md: nothing names it" in dry.stdout
    assert api.storage.get("documents/lost.md") == b"orphan"
    done = await retention(api)
    assert done.returncode == 0, done.stderr
    assert "deleted 1 files under documents/ that nothing names" in done.stdout
    assert "deleted images/lost.png: nothing names it" in done.stdout
    for key in ("documents/lost.md", "images/lost.png"):
        with pytest.raises(ObjectNotFound):
            api.storage.get(key)
    assert api.storage.get("documents/in-flight.md") == b"orphan"  # inside the grace
    assert api.storage.get(tracked)  # a row names it


async def test_deployments_of_tenants_with_no_active_key_are_deleted(api):
    """A tenant whose every key is revoked is gone: retention marks its deployments
    `deleting` (saying why), which the API's runner finishes; other tenants' stay."""
    for tenant in ("leaving", "staying"):
        await create_api_key(api.app.state.sessionmaker, tenant, tenant=tenant)
    made = {}
    for tenant in ("leaving", "staying"):
        made[tenant] = uuid.uuid4()
        await execute(
            api,
            "INSERT INTO deployments (id, tenant, name, model, task, workers_min, workers_max,"
            " idle_timeout, env, status, deadline_at) VALUES (:id, :tenant, 'chat', 'acme/chat',"
            " 'generate', 0, 1, 5, '{}', 'ready', now())",
            id=made[tenant],
            tenant=tenant,
        )
    keyring = api.app.state.deployments.keyring
    for tenant in ("leaving", "staying"):  # their own RunPod accounts hold their deployments
        sealed = keyring.seal(f"rp-key-of-{tenant}", tenant)
        await execute(
            api,
            "INSERT INTO tenant_runpod_keys (tenant, ciphertext, wrapped_key, kek_id, hint)"
            " VALUES (:tenant, :ciphertext, :wrapped_key, :kek_id, 'x')",
            tenant=tenant,
            ciphertext=sealed.ciphertext,
            wrapped_key=sealed.wrapped_key,
            kek_id=sealed.kek_id,
        )
        await execute(
            api, "UPDATE deployments SET own_account = true WHERE id = :id", id=made[tenant]
        )
    key_id = await scalar(api, "SELECT id FROM api_keys WHERE tenant = 'leaving'")
    assert await revoke_api_key(api.app.state.sessionmaker, key_id)

    dry = await retention(api, "--dry-run")
    assert f"would delete deployment {made['leaving']} ('chat', tenant 'leaving')" in dry.stdout
    assert "would delete 1 deployments of tenants with no active API key" in dry.stdout
    status = "SELECT status FROM deployments WHERE id = :id"
    assert await scalar(api, status, id=made["leaving"]) == "ready"

    done = await retention(api)
    assert done.returncode == 0, done.stderr
    assert "deleted 1 deployments of tenants with no active API key" in done.stdout
    detail = "SELECT detail FROM deployment_events WHERE deployment_id = :id AND status = :status"
    assert (
        await scalar(api, detail, id=made["leaving"], status="deleting")
        == "retention: its tenant has no active API key"
    )
    api.app.state.deployments.wake()
    deadline = time.monotonic() + 10
    while await scalar(api, status, id=made["leaving"]) != "deleted":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert await scalar(api, status, id=made["staying"]) == "ready"
    # Its RunPod key was kept while its deployment was being removed (with it); now forgotten.
    assert "forgot the RunPod key of tenant" not in done.stdout
    dry = await retention(api, "--dry-run")
    assert "would forget the RunPod key of tenant 'leaving': it has no active API key" in dry.stdout
    assert "forgot the RunPod key of tenant 'leaving'" in (await retention(api)).stdout
    keys = "SELECT string_agg(tenant, ',') FROM tenant_runpod_keys WHERE tenant LIKE '%ing'"
    assert await scalar(api, keys) == "staying"
