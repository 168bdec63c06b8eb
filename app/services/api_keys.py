"""API keys: created once, stored as SHA-256 hashes, checked and rate-limited in one query.
Each key belongs to a tenant, whose data it reads and writes (a tenant of its own unless one is
named)."""

import hashlib
import math
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.core.db import autocommit
from app.core.errors import RateLimited, Unauthorized
from app.models import ApiKey

KEY_PREFIX = "tdm_"

# Finds the key and counts the request in the current minute's window in one autocommitted
# round trip. The count is not worth a disk flush: `synchronous_commit` is off for this
# statement, so a crash may forget the last few counts, never a key.
_AUTHENTICATE = text(
    """
    WITH no_flush AS (SELECT set_config('synchronous_commit', 'off', true)),
    key AS (
        SELECT id, tenant FROM api_keys, no_flush
        WHERE key_hash = :key_hash AND revoked_at IS NULL
    )
    INSERT INTO rate_limit_windows AS w (api_key_id, window_start, count)
    SELECT id, date_trunc('minute', now()), 1 FROM key
    ON CONFLICT (api_key_id, window_start) DO UPDATE SET count = w.count + 1
    RETURNING w.api_key_id, (SELECT tenant FROM key), w.count, 60 - extract(second FROM now())
    """
)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: its key, and the tenant whose data it may see."""

    key_id: uuid.UUID
    tenant: str


async def create_api_key(
    sessionmaker: async_sessionmaker, name: str, tenant: str | None = None
) -> str:
    """Store a new key's hash (in `tenant`, else a tenant of its own named after the key's
    id); return the key itself, which is never stored."""
    key, key_id = KEY_PREFIX + secrets.token_urlsafe(32), uuid.uuid4()
    async with sessionmaker.begin() as session:
        session.add(
            ApiKey(id=key_id, name=name, tenant=tenant or str(key_id), key_hash=hash_key(key))
        )
    return key


async def list_api_keys(sessionmaker: async_sessionmaker) -> list[Row]:
    """Every key (never the key itself): id, name, tenant, created_at, revoked_at."""
    columns = (ApiKey.id, ApiKey.name, ApiKey.tenant, ApiKey.created_at, ApiKey.revoked_at)
    async with sessionmaker() as session:
        return list((await session.execute(select(*columns).order_by(ApiKey.created_at))).all())


async def revoke_api_key(sessionmaker: async_sessionmaker, key_id: uuid.UUID) -> bool:
    """Revoke a key from now on; False when no such key is in use."""
    async with sessionmaker.begin() as session:
        revoked = await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
    return revoked.rowcount == 1


async def authenticate(engine: AsyncEngine, key: str, limit_per_minute: int) -> Caller:
    """The caller of a valid key; Unauthorized or RateLimited otherwise."""
    if not key.startswith(KEY_PREFIX):
        raise Unauthorized("invalid API key")
    async with autocommit(engine) as conn:
        row = (await conn.execute(_AUTHENTICATE, {"key_hash": hash_key(key)})).first()
    if row is None:
        raise Unauthorized("invalid API key")
    key_id, tenant, count, seconds_left = row
    if count > limit_per_minute:
        raise RateLimited(
            f"rate limit of {limit_per_minute} requests a minute exceeded",
            headers={"Retry-After": str(max(1, math.ceil(seconds_left)))},
        )
    return Caller(key_id, tenant)
