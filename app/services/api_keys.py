"""API keys: created once, stored as SHA-256 hashes, checked and rate-limited in one query."""

import hashlib
import math
import secrets
import uuid

from sqlalchemy import text
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
        SELECT id FROM api_keys, no_flush WHERE key_hash = :key_hash AND revoked_at IS NULL
    )
    INSERT INTO rate_limit_windows AS w (api_key_id, window_start, count)
    SELECT id, date_trunc('minute', now()), 1 FROM key
    ON CONFLICT (api_key_id, window_start) DO UPDATE SET count = w.count + 1
    RETURNING w.api_key_id, w.count, 60 - extract(second FROM now())
    """
)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(sessionmaker: async_sessionmaker, name: str) -> str:
    """Store a new key's hash; return the key itself, which is never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with sessionmaker.begin() as session:
        session.add(ApiKey(id=uuid.uuid4(), name=name, key_hash=hash_key(key)))
    return key


async def authenticate(engine: AsyncEngine, key: str, limit_per_minute: int) -> uuid.UUID:
    """The id of a valid key; Unauthorized or RateLimited otherwise."""
    if not key.startswith(KEY_PREFIX):
        raise Unauthorized("invalid API key")
    async with autocommit(engine) as conn:
        row = (await conn.execute(_AUTHENTICATE, {"key_hash": hash_key(key)})).first()
    if row is None:
        raise Unauthorized("invalid API key")
    key_id, count, seconds_left = row
    if count > limit_per_minute:
        raise RateLimited(
            f"rate limit of {limit_per_minute} requests a minute exceeded",
            headers={"Retry-After": str(max(1, math.ceil(seconds_left)))},
        )
    return key_id
