"""Alembic migrations: up, down, up again, concurrent runs, and the model matching the schema."""

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.core.db import make_engine
from app.core.migrations import migrate
from app.models import Base

TABLES = {"alembic_version", "api_keys", "conversations", "messages", "rate_limit_windows"}


async def tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_downgrade_upgrade(database_url):
    engine = make_engine(database_url, pool_size=2)
    # Several instances starting at once: the advisory lock makes them take turns.
    await asyncio.gather(*(migrate(engine) for _ in range(3)))
    assert await tables(engine) == TABLES

    await migrate(engine, "base", "downgrade")
    assert await tables(engine) == {"alembic_version"}

    await migrate(engine)
    assert await tables(engine) == TABLES
    await engine.dispose()


async def test_models_match_the_migrated_schema(database_url):
    engine = make_engine(database_url, pool_size=1)
    await migrate(engine)
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    assert diff == []
    await engine.dispose()
