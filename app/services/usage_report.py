"""Usage read back: sums of a tenant's usage rows (`GET /v1/usage`) or every tenant's
(`python -m app usage`) over a time range, grouped, with totals. Cost is the estimate at each
endpoint's GPU price (`cost_usd`: on the stack's RunPod account; `own_account_usd`: on the
tenant's own, which RunPod bills to the tenant); `unpriced` counts rows whose GPU had no price,
never counted as $0."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import autocommit

GroupBy = Literal["day", "model", "key", "route", "tenant"]
_GROUPS: dict[str, str] = {
    "day": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "model": "coalesce(model, worker)",
    "key": "coalesce(api_key_id::text, '-')",
    "route": "route",
    "tenant": "tenant",
}
_SUMS = """
    count(*) AS requests,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(items), 0) AS items,
    coalesce(sum(audio_seconds), 0) AS audio_seconds,
    coalesce(sum(pixel_steps), 0) AS pixel_steps,
    coalesce(sum(execution_ms), 0) / 1000 AS execution_seconds,
    coalesce(sum(cost_usd) FILTER (WHERE billed_to = 'stack'), 0) AS cost_usd,
    coalesce(sum(cost_usd) FILTER (WHERE billed_to = 'tenant'), 0) AS own_account_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced
"""


class UsageSums(BaseModel):
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    items: int = Field(0, description="texts or images embedded, images drawn")
    audio_seconds: float = 0
    pixel_steps: int = Field(0, description="images x pixels x steps drawn")
    execution_seconds: float = Field(0, description="worker time, as RunPod bills it")
    cost_usd: float = Field(0, description="estimated, on the stack's RunPod account")
    own_account_usd: float = Field(0, description="estimated, on the tenant's own account")
    unpriced: int = Field(0, description="requests on a GPU without a known price")


class UsageGroup(UsageSums):
    group: str = Field(description="the day (UTC), model, key id, route or tenant")


class UsageReport(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    group_by: str
    groups: list[UsageGroup]
    total: UsageSums


async def usage_report(
    engine: AsyncEngine, tenant: str | None, start: datetime, end: datetime, group_by: GroupBy
) -> UsageReport:
    """Usage from `start` to `end` (excluded) of `tenant` (None: every tenant), by `group_by`."""
    where = "created_at >= :start AND created_at < :end"
    if tenant is not None:
        where += " AND tenant = :tenant"
    group = _GROUPS[group_by]
    query = text(
        f'SELECT {group} AS "group", {_SUMS} FROM usage WHERE {where}'  # noqa: S608
        f" GROUP BY 1 ORDER BY 1"
    )
    params: dict[str, Any] = {"start": start, "end": end, "tenant": tenant}
    async with autocommit(engine) as conn:
        rows = [
            UsageGroup.model_validate(dict(row._mapping))
            for row in await conn.execute(query, params)
        ]
    total = UsageSums(
        **{field: sum(getattr(row, field) for row in rows) for field in UsageSums.model_fields}
    )
    return UsageReport(start=start, end=end, group_by=group_by, groups=rows, total=total)


def table(report: UsageReport) -> str:
    """The report as a text table (the operator's `python -m app usage`), its total last."""
    header = [report.group_by, "requests", "tokens in", "tokens out", "items", "audio s"]
    header += ["worker s", "cost $", "own account $", "unpriced"]
    lines = [header]
    for name, sums in [*((group.group, group) for group in report.groups), ("total", report.total)]:
        lines.append(
            [
                name,
                f"{sums.requests:,}",
                f"{sums.input_tokens:,}",
                f"{sums.output_tokens:,}",
                f"{sums.items:,}",
                f"{sums.audio_seconds:,.1f}",
                f"{sums.execution_seconds:,.1f}",
                f"{sums.cost_usd:,.4f}",
                f"{sums.own_account_usd:,.4f}",
                f"{sums.unpriced:,}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text_lines = [
        "  ".join(
            [line[0].ljust(widths[0])]
            + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        )
        for line in lines
    ]
    text_lines.insert(len(text_lines) - 1, "-" * len(text_lines[0]))
    span = f"usage from {report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC"
    return "\n".join([span, *text_lines])
