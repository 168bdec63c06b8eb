"""Alembic migrations, applied under a Postgres advisory lock so instances never race."""

from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
# Any constant shared by every instance; "tandem" in ASCII.
ADVISORY_LOCK_KEY = 0x74616E64656D


def _alembic(connection: Connection, action: str, revision: str) -> None:
    # Imported here: alembic is only needed when migrating, not on every cold start.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


async def migrate(engine: AsyncEngine, revision: str = "head", action: str = "upgrade") -> None:
    """Run `alembic upgrade|downgrade <revision>` in one transaction holding the lock."""
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        await conn.run_sync(_alembic, action, revision)
