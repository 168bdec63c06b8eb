"""`GET /v1/usage`: what the tenant's requests had the workers do, and what it cost."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Query

from app.api.deps import CallerDep, EngineDep, keyed_router
from app.core.errors import InvalidInput
from app.services.usage import month_start
from app.services.usage_report import UsageReport, usage_report

router = keyed_router(tags=["usage"])


@router.get(
    "/usage", summary="The tenant's usage and estimated spend", response_model_by_alias=True
)
async def get_usage(
    engine: EngineDep,
    caller: CallerDep,
    start: Annotated[
        datetime | None,
        Query(alias="from", description="ISO 8601; default: the start of this month (UTC)"),
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="ISO 8601, excluded; default: now")
    ] = None,
    group_by: Literal["day", "model", "key", "route"] = "day",
) -> UsageReport:
    """The tenant's usage rows summed per day (UTC), model, key or route, with the total;
    cost is estimated at each endpoint's GPU price a second."""
    end = _aware(end) or datetime.now(UTC)
    start = _aware(start) or month_start(end)
    if start >= end:
        raise InvalidInput(
            f"from ({start.isoformat()}) must be before to ({end.isoformat()})", param="from"
        )
    return await usage_report(engine, caller.tenant, start, end, group_by)


def _aware(moment: datetime | None) -> datetime | None:
    """A time without a zone as UTC."""
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment
