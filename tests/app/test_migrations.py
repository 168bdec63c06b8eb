"""Alembic migrations: up, down, up again, concurrent runs, the model matching the schema, and
who migrates: local and test runs on start-up, a deployed API's deploy (its migration job)."""

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.core.db import make_engine
from app.core.migrations import check_vector_dims, head_revision, migrate
from app.main import create_app
from app.models import Base
from tests.app.test_cli import run_cli
from tests.conftest import app_client, controlled_backend, make_settings

SETTINGS = make_settings(None)
TABLES = {
    "alembic_version",
    "api_keys",
    "chunks",
    "conversations",
    "deployment_events",
    "deployments",
    "documents",
    "images",
    "job_parts",
    "jobs",
    "messages",
    "rate_buckets",
    "tenant_runpod_keys",
    "turn_replays",
    "usage",
    "spend",
    "tenant_budgets",
    "webhook_deliveries",
    "webhook_secrets",
}


async def tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_downgrade_upgrade(database_url):
    engine = make_engine(database_url, pool_size=2)
    # Several instances starting at once: the advisory lock makes them take turns.
    await asyncio.gather(*(migrate(engine, SETTINGS) for _ in range(3)))
    assert await tables(engine) == TABLES

    await migrate(engine, SETTINGS, "base", "downgrade")
    assert await tables(engine) == {"alembic_version"}

    await migrate(engine, SETTINGS)
    assert await tables(engine) == TABLES
    await engine.dispose()


async def test_models_match_the_migrated_schema(database_url):
    engine = make_engine(database_url, pool_size=1)
    await migrate(engine, SETTINGS)
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    assert diff == []
    await engine.dispose()


async def test_start_up_refuses_tables_made_for_another_model(database_url):
    engine = make_engine(database_url, pool_size=1)
    await migrate(engine, SETTINGS)
    await check_vector_dims(engine, SETTINGS)  # the sizes the tables were made with
    bigger = make_settings(None, text_embedding_dim=768)
    with pytest.raises(RuntimeError, match=r"chunks.embedding holds 384-dim.*TEXT_EMBEDDING_DIM"):
        await check_vector_dims(engine, bigger)
    await engine.dispose()


@pytest.mark.parametrize(
    ("environment", "given", "migrates"),
    [
        ("local", None, True),
        ("test", None, True),
        ("dev", None, False),
        ("prod", None, False),
        ("prod", True, True),
        ("test", False, False),
    ],
)
def test_only_local_and_test_runs_migrate_on_start_up_by_default(environment, given, migrates):
    overrides = {"environment": environment, "signing_secret": "s"}
    if given is not None:
        overrides["migrate_on_start"] = given
    assert make_settings("postgresql://db/x", **overrides).migrate_on_start is migrates


async def test_a_deployed_api_waits_for_the_deploys_migration_job(database_url, caplog):
    """An API in dev does not migrate on start-up: against an older schema its readiness fails
    (its log says what to run); the migration job's command (`python -m app migrate`, with the
    API's env) then brings the database to this release's revision."""
    engine = make_engine(database_url, pool_size=1)
    await migrate(engine, SETTINGS)
    await migrate(engine, SETTINGS, "0004", "downgrade")  # the previous release's schema
    await engine.dispose()
    env = {"DATABASE_URL": database_url, "SIGNING_SECRET": "s", "INFERENCE_BACKEND": "local"}
    settings = make_settings(database_url, environment="dev", signing_secret="s")
    async with app_client(create_app(settings, controlled_backend())) as client:
        response = await client.get("/readiness")
        assert response.status_code == 503
        assert response.json()["checks"]["database"] == "failed"  # why: in the log only
        assert "0004" not in response.text
        assert (
            f"database failed: the database is at revision 0004 and this release needs "
            f"{head_revision()}: run `python -m app migrate` (the deploy's migration job)"
        ) in caplog.text
        # as the Cloud Run job runs it
        job = await asyncio.to_thread(run_cli, "migrate", ENVIRONMENT="dev", **env)
        assert job.returncode == 0, job.stderr
        assert "database migrated to head" in job.stdout
        assert (await client.get("/readiness")).json()["checks"]["database"] == "ok"
