"""Monthly budgets (UTC months) in USD, per key and per tenant, against what their usage cost on
the stack's RunPod account (`spend`, kept by app/services/usage.py). They are checked in the
key's own round trip (app/services/api_keys.py): past one, requests that would reach a worker
are refused with `insufficient_quota`. At `alert_percent` of a tenant's budget its `alert_url`
is sent the tenant's signed webhook, once a month."""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import autocommit
from app.core.envelope import Keyring
from app.core.errors import NotFound
from app.models import ApiKey, TenantBudget
from app.services.deployment_webhooks import signed_post
from app.services.usage import MONTH

log = logging.getLogger("tandem.budgets")

DEFAULT_ALERT_PERCENT = 80

_ALERTS_DUE = text(
    f"""
    WITH spent AS (
        SELECT tenant, sum(usd) AS usd FROM spend
        WHERE month = {MONTH} AND tenant = ANY(:tenants) GROUP BY tenant
    )
    UPDATE tenant_budgets AS b SET alerted_month = {MONTH}
    FROM spent
    WHERE b.tenant = spent.tenant AND b.alert_url IS NOT NULL
        AND b.alerted_month IS DISTINCT FROM {MONTH}
        AND spent.usd >= b.monthly_usd * b.alert_percent / 100.0
    RETURNING b.tenant, b.alert_url, b.monthly_usd, b.alert_percent, spent.usd, b.alerted_month
    """  # noqa: S608 - MONTH is this package's
)
_BUDGETS = text(
    f"""
    SELECT 'tenant' AS scope, b.tenant, NULL::uuid AS key_id, NULL AS key_name, b.monthly_usd,
        b.alert_percent, b.alert_url,
        (SELECT coalesce(sum(usd), 0) FROM spend WHERE tenant = b.tenant AND month = {MONTH})
            AS spent_usd
    FROM tenant_budgets AS b
    UNION ALL
    SELECT 'key', k.tenant, k.id, k.name, k.monthly_budget_usd, NULL, NULL,
        (SELECT coalesce(sum(usd), 0) FROM spend WHERE api_key_id = k.id AND month = {MONTH})
    FROM api_keys AS k WHERE k.monthly_budget_usd IS NOT NULL AND k.revoked_at IS NULL
    ORDER BY 2, 1 DESC, 3
    """  # noqa: S608 - MONTH is this package's
)


async def set_key_budget(engine: AsyncEngine, key_id: uuid.UUID, monthly_usd: float | None) -> None:
    """A key's monthly budget (None: none of its own); NotFound for no such key."""
    async with engine.begin() as conn:
        changed = await conn.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(monthly_budget_usd=monthly_usd)
        )
    if changed.rowcount != 1:
        raise NotFound(f"no API key {key_id}: list them with `python -m app list-api-keys`")


async def set_tenant_budget(
    engine: AsyncEngine,
    tenant: str,
    monthly_usd: float | None,
    alert_percent: int = DEFAULT_ALERT_PERCENT,
    alert_url: str | None = None,
) -> None:
    """A tenant's monthly budget, and where its alert goes (None: the budget is removed)."""
    async with engine.begin() as conn:
        if monthly_usd is None:
            await conn.execute(delete(TenantBudget).where(TenantBudget.tenant == tenant))
            return
        values = {
            "monthly_usd": monthly_usd,
            "alert_percent": alert_percent,
            "alert_url": alert_url,
        }
        await conn.execute(
            pg_insert(TenantBudget)
            .values(tenant=tenant, **values)
            .on_conflict_do_update(index_elements=["tenant"], set_=values)
        )


async def budgets(engine: AsyncEngine) -> list[Row]:
    """Every budget with what was spent against it this month: scope (tenant or key), tenant,
    key_id, key_name, monthly_usd, alert_percent, alert_url, spent_usd."""
    async with autocommit(engine) as conn:
        return list((await conn.execute(_BUDGETS)).all())


@dataclass
class BudgetAlerts:
    """Sends the alerts of tenants whose spend reached their alert threshold this month (run
    after usage is written: the usage writer's `on_written`)."""

    engine: AsyncEngine
    keyring: Keyring | None
    public_only: bool

    async def __call__(self, tenants: set[str]) -> None:
        async with autocommit(self.engine) as conn:
            due = (await conn.execute(_ALERTS_DUE, {"tenants": sorted(tenants)})).all()
        for row in due:
            await self.send(row)

    async def send(self, row: Row) -> None:
        body = alert_body(
            row.tenant, row.alerted_month, row.monthly_usd, row.usd, row.alert_percent
        )
        _, error = await signed_post(
            self.engine, self.keyring, row.tenant, row.alert_url, body, self.public_only
        )
        if error is not None:
            log.warning("budget alert of tenant %s not delivered: %s", row.tenant, error)


def alert_body(tenant: str, month: date, budget: float, spent: float, percent: int) -> bytes:
    return json.dumps(
        {
            "event": "budget.alert",
            "tenant": tenant,
            "month": month.isoformat()[:7],
            "monthly_usd": budget,
            "spent_usd": round(spent, 6),
            "alert_percent": percent,
        }
    ).encode()
