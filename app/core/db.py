"""Database URLs, the async engine and session factory."""

import logging
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings
from app.core.errors import DatabaseUnavailable
from app.core.local_postgres import LocalPostgres

log = logging.getLogger("tandem.db")


def async_url(url: str) -> str:
    """Any Postgres URL as an SQLAlchemy asyncpg URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {url.split(':', 1)[0]}://...")


def open_database(settings: Settings) -> tuple[str, LocalPostgres | None]:
    """The asyncpg URL to use: DATABASE_URL's, or else that of the embedded Postgres under
    TANDEM_HOME (started, or joined), which comes with it."""
    if settings.database_url is not None:
        return async_url(settings.database_url.get_secret_value()), None
    local = LocalPostgres(settings.tandem_home / "pgdata")
    return async_url(local.start()), local


def connect_args(settings: Settings) -> dict[str, Any]:
    """How asyncpg connects to DATABASE_URL: TLS verified against DATABASE_CA_CERT (the
    server's certificate and its host name), and no prepared statements behind a pooler in
    transaction mode (each statement may run on another server connection)."""
    args: dict[str, Any] = {}
    if settings.database_ca_cert is not None:
        try:
            args["ssl"] = ssl.create_default_context(
                cadata=settings.database_ca_cert.get_secret_value()
            )
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError("DATABASE_CA_CERT is not a PEM certificate") from exc
    if settings.database_pool_mode == "transaction":
        args |= {
            "statement_cache_size": 0,  # asyncpg's own cache
            "prepared_statement_cache_size": 0,  # SQLAlchemy's
            # The unnamed statements asyncpg still prepares, named apart across connections.
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
        }
    return args


def make_engine(url: str, pool_size: int, args: dict[str, Any] | None = None) -> AsyncEngine:
    """The engine for `url`; `args`: `connect_args(settings)` for DATABASE_URL."""
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, connect_args=args or {}
    )

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        # asyncpg raises OSError and its own errors here, unwrapped: make them one known error.
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
            if password := cparams.get("password"):
                detail = detail.replace(str(password), "***")
            log.warning("cannot connect to the database: %s", detail)
            raise DatabaseUnavailable("the database is unavailable", detail) from exc

    return engine


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection without BEGIN/COMMIT round trips: each statement commits on its own."""
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
