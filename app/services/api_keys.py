"""API keys: created once, stored as SHA-256 hashes, checked and rate-limited in one query.
Each key belongs to a tenant, whose data it reads and writes (a tenant of its own unless one is
named)."""

import hashlib
import math
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.core.db import autocommit
from app.core.errors import OverBudget, RateLimited, Unauthorized
from app.models import ApiKey
from app.services.usage import MONTH, next_month

KEY_PREFIX = "tdm_"

# Finds the key, checks its and its tenant's monthly budget when the request is `metered` (it
# would reach a worker) and takes `cost` tokens from its bucket in one autocommitted round trip;
# a request over budget takes no token (`scope` says whose budget is spent). The bucket
# refills at `rate` tokens a second up to `capacity`; an update that would go below `cost` tokens is
# not made, so a refused request writes nothing. The update reads the row it locked (the latest,
# whatever raced it), so concurrent requests never take the same token; it refills by the clock once
# it holds the lock (`clock_timestamp()`: the statement's start, `now()`, is earlier than the write
# of a racer it waited for, which refused tokens it was owed). The last column is the bucket's level
# before this request (for Retry-After). The write is not worth a disk flush: `synchronous_commit`
# is off for this statement, so a crash may forget the last few tokens taken, never a key.
_AUTHENTICATE = text(
    f"""
    WITH no_flush AS (SELECT set_config('synchronous_commit', 'off', true)),
    key AS (
        SELECT id, tenant, monthly_budget_usd FROM api_keys, no_flush
        WHERE key_hash = :key_hash AND revoked_at IS NULL
    ),
    budget AS (
        SELECT key.monthly_budget_usd AS key_budget,
            (SELECT coalesce(sum(usd), 0) FROM spend
             WHERE api_key_id = key.id AND month = {MONTH}) AS key_spent,
            (SELECT monthly_usd FROM tenant_budgets AS t WHERE t.tenant = key.tenant)
                AS tenant_budget,
            (SELECT coalesce(sum(usd), 0) FROM spend
             WHERE spend.tenant = key.tenant AND month = {MONTH}) AS tenant_spent
        FROM key WHERE :metered
    ),
    over AS (
        SELECT CASE WHEN key_spent >= key_budget THEN 'key'
            WHEN tenant_spent >= tenant_budget THEN 'tenant' END AS scope,
            key_budget, key_spent, tenant_budget, tenant_spent
        FROM budget
    ),
    level AS (
        SELECT least(:capacity, b.tokens + greatest(0, extract(epoch FROM clock_timestamp()
            - b.updated_at)) * :rate) AS tokens
        FROM rate_buckets AS b, key WHERE b.api_key_id = key.id
    ),
    taken AS (
        INSERT INTO rate_buckets AS b (api_key_id, tokens, updated_at)
        SELECT id, :capacity - :cost, clock_timestamp() FROM key
        WHERE NOT EXISTS (SELECT FROM over WHERE scope IS NOT NULL)
        ON CONFLICT (api_key_id) DO UPDATE
            SET tokens = least(:capacity, b.tokens + greatest(0, extract(epoch FROM
                clock_timestamp() - b.updated_at)) * :rate) - :cost,
                updated_at = greatest(b.updated_at, clock_timestamp())
            WHERE least(:capacity, b.tokens + greatest(0, extract(epoch FROM clock_timestamp()
                - b.updated_at)) * :rate) >= :cost
        RETURNING b.api_key_id
    )
    SELECT key.id, key.tenant, EXISTS (SELECT FROM taken) AS allowed,
        (SELECT tokens FROM level) AS level, over.*
    FROM key LEFT JOIN over ON true
    """  # noqa: S608 - MONTH is app.services.usage's
)
REFUSALS_KEPT = 10_000  # unknown or limited keys an instance remembers
UNKNOWN_FOR_S = 60.0  # how long an instance refuses an unknown key without asking Postgres


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: its key, and the tenant whose data it may see."""

    key_id: uuid.UUID
    tenant: str


async def create_api_key(
    sessionmaker: async_sessionmaker,
    name: str,
    tenant: str | None = None,
    monthly_budget_usd: float | None = None,
) -> str:
    """Store a new key's hash (in `tenant`, else a tenant of its own named after the key's
    id; with a monthly budget of its own, if given); return the key itself, never stored."""
    key, key_id = KEY_PREFIX + secrets.token_urlsafe(32), uuid.uuid4()
    async with sessionmaker.begin() as session:
        session.add(
            ApiKey(
                id=key_id,
                name=name,
                tenant=tenant or str(key_id),
                key_hash=hash_key(key),
                monthly_budget_usd=monthly_budget_usd,
            )
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


class Authenticator:
    """Checks keys and their rate limit. What it already knows is refused without a round
    trip: a key Postgres did not know (for a minute: a revoked key stays refused) and a key over
    its limit (until its Retry-After), so floods cost the database nothing."""

    def __init__(self, engine: AsyncEngine, limit_per_minute: int) -> None:
        self.engine = engine
        self.limit = limit_per_minute
        # key hash -> until when it is refused here, and whether for its limit (else unknown)
        self._refused: dict[str, tuple[float, bool]] = {}

    async def caller(self, key: str, cost: int = 1, metered: bool = False) -> Caller:
        """The caller of a valid key with `cost` tokens left in its bucket (a request's weight,
        ROUTE_COSTS) and, for a `metered` request, budget left; Unauthorized, RateLimited or
        OverBudget otherwise."""
        cost = min(cost, self.limit)
        if not key.startswith(KEY_PREFIX):
            raise Unauthorized("invalid API key")
        hashed = hash_key(key)
        now = time.monotonic()
        if (known := self._refused.get(hashed)) is not None:
            until, limited = known
            if now < until:
                raise self._limited(until - now) if limited else Unauthorized("invalid API key")
            del self._refused[hashed]
        params = {
            "key_hash": hashed,
            "capacity": self.limit,
            "rate": self.limit / 60,
            "cost": cost,
            "metered": metered,
        }
        async with autocommit(self.engine) as conn:
            row = (await conn.execute(_AUTHENTICATE, params)).first()
        if row is None:
            self._remember(hashed, now + UNKNOWN_FOR_S, limited=False)
            raise Unauthorized("invalid API key")
        if row.scope is not None:
            raise over_budget(row)
        if not row.allowed:
            level = row.level or 0
            # Refused here without a round trip until even a light request could pass.
            self._remember(hashed, now + (1 - level) * 60 / self.limit, limited=True)
            raise self._limited((cost - level) * 60 / self.limit)
        return Caller(row.id, row.tenant)

    def _limited(self, wait_s: float) -> RateLimited:
        return RateLimited(
            f"rate limit of {self.limit} requests a minute exceeded (a request's weight: "
            "ROUTE_COSTS)",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )

    def _remember(self, hashed: str, until: float, limited: bool) -> None:
        if len(self._refused) >= REFUSALS_KEPT:  # the oldest first
            del self._refused[next(iter(self._refused))]
        self._refused[hashed] = (until, limited)


def over_budget(row: Row) -> OverBudget:
    """The refusal of a request whose key's (or tenant's) monthly budget is spent."""
    if row.scope == "key":
        whose, budget, spent = "this API key", row.key_budget, row.key_spent
    else:
        whose, budget, spent = "this tenant", row.tenant_budget, row.tenant_spent
    return OverBudget(
        f"the monthly budget of {whose} (${budget:,.2f}) is spent: ${spent:,.2f} this month "
        f"(UTC); it renews on {next_month()}. The operator can raise it: python -m app budget set"
    )
