"""Alembic migrations: up, down, up again, concurrent runs, and the model matching the schema."""

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.core.db import make_engine
from app.core.migrations import check_vector_dims, migrate
from app.models import Base
from tests.conftest import make_settings

SETTINGS = make_settings(None)
TABLES = {
    "alembic_version",
    "api_keys",
    "chunks",
    "conversations",
    "documents",
    "images",
    "job_parts",
    "jobs",
    "messages",
    "rate_buckets",
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
