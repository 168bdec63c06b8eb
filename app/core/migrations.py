"""Alembic migrations, applied under a Postgres advisory lock so instances never race; the
readiness check that the database is at this release's revision; and the start-up check that
the vector columns fit the embedding models."""

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.config import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
# Any constant shared by every instance; "tandem" in ASCII.
ADVISORY_LOCK_KEY = 0x74616E64656D
# Vector columns and the setting that sizes each.
VECTOR_COLUMNS = {"chunks": "TEXT_EMBEDDING_DIM", "images": "IMAGE_EMBEDDING_DIM"}


def _config() -> "Config":
    # Imported here: alembic is only needed when migrating or checking, not on every cold start.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _alembic(connection: Connection, settings: Settings, action: str, revision: str) -> None:
    from alembic import command

    config = _config()
    config.attributes["connection"] = connection
    config.attributes["vector_dims"] = (settings.text_embedding_dim, settings.image_embedding_dim)
    getattr(command, action)(config, revision)


async def migrate(
    engine: AsyncEngine, settings: Settings, revision: str = "head", action: str = "upgrade"
) -> None:
    """Run `alembic upgrade|downgrade <revision>` in one transaction holding the lock."""
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        await conn.run_sync(_alembic, settings, action, revision)


@cache
def head_revision() -> str:
    """The revision this release's migrations end at."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations have one head"
    return head


async def pending_migrations(conn: AsyncConnection) -> str | None:
    """What to do when the database is not at this release's revision (else None): a deployed
    API does not migrate on start-up, its deploy does."""
    has_table = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    current = (
        await conn.scalar(text("SELECT version_num FROM alembic_version")) if has_table else None
    )
    if current == head_revision():
        return None
    return (
        f"the database is at revision {current or 'none'} and this release needs "
        f"{head_revision()}: run `python -m app migrate` (the deploy's migration job)"
    )


_VECTOR_SIZES = text(
    "SELECT attrelid::regclass::text AS table_name, atttypmod AS dim FROM pg_attribute"
    " WHERE attrelid IN (to_regclass('chunks'), to_regclass('images'))"
    " AND attname = 'embedding'"
)


async def check_vector_dims(engine: AsyncEngine, settings: Settings) -> None:
    """Refuse to start on tables made for embeddings of another size (a changed model)."""
    expected = {"chunks": settings.text_embedding_dim, "images": settings.image_embedding_dim}
    async with engine.connect() as conn:
        rows = (await conn.execute(_VECTOR_SIZES)).all()
    for table, dim in rows:
        if dim != expected[table]:
            setting = VECTOR_COLUMNS[table]
            raise RuntimeError(
                f"{table}.embedding holds {dim}-dimensional vectors but {setting} is "
                f"{expected[table]}: set {setting}={dim} to match the stored vectors (a model of "
                "another size needs everything embedded again: `python -m app downgrade 0001` "
                "drops the tables, `python -m app migrate` makes them anew)"
            )
