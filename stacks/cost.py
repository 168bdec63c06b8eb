"""`python -m stacks cost STACK [--days 30]`: what RunPod billed over the last days for the
stack's GPU endpoints (its outputs `<type>_endpoint_id`) and for the deployments its API made
(endpoints named with its prefix, runpod_api/names.py), beside the plan's estimate for as many
days (infra/cost.py at the catalog snapshot's prices). An endpoint billed more than OVER above
its estimate is flagged, and so is one whose workers fail to start (RunPod lists them
UNHEALTHY: each start is billed, for nothing); the scheduled drift workflow adds those lines to
the stack's issue. The endpoints are the program's: reported, never changed here."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.cost import HOURS, Estimate
from infra.plan import endpoint_ids
from runpod_api.client import RunPodRest
from runpod_api.names import made_by, stack_prefix

OVER = 0.25  # billed more than 25 % over the estimate: flagged
DAYS_A_MONTH = HOURS / 24


@dataclass(frozen=True)
class Spend:
    """One endpoint's (or the deployments') billed amount beside its estimate, in USD."""

    name: str
    billed: float
    estimated: float | None  # None: not estimated (deployments are the tenants')

    @property
    def over(self) -> bool:
        if self.estimated is None:
            return False
        return self.billed > self.estimated * (1 + OVER) and self.billed >= 0.01


def spends(
    stack: str, outputs: dict[str, Any], rest: RunPodRest, cost: Estimate, days: int
) -> list[Spend]:
    """The stack's endpoints' spends over the last `days`, then its deployments' together."""
    end = datetime.now(UTC)
    billed = rest.billed(end - timedelta(days=days), end)
    monthly = {item.resource: item.monthly for item in cost.costs}
    found = []
    for worker, endpoint_id in endpoint_ids(outputs).items():
        estimate = monthly.get(f"tandem-{stack}-{worker}-endpoint")
        share = None if estimate is None else estimate * days / DAYS_A_MONTH
        found.append(Spend(worker, billed.pop(endpoint_id, 0.0), share))
    prefix = stack_prefix(stack)
    deployed = {e["id"] for e in rest.list_endpoints() if made_by(prefix, e.get("name", ""))}
    found.append(Spend("deployments", sum(billed.get(e, 0.0) for e in deployed), None))
    return found


def unhealthy_lines(stack: str, outputs: dict[str, Any], rest: RunPodRest) -> list[str]:
    """A Markdown line per stack endpoint with workers failing to start."""
    lines = []
    for worker, endpoint_id in endpoint_ids(outputs).items():
        workers = rest.workers(endpoint_id)["workers"]
        if failing := [w["id"] for w in workers if w["status"] == "UNHEALTHY"]:
            lines.append(
                f"- Workers failing to start: `{stack}`'s {worker} endpoint has "
                f"{len(failing)} unhealthy ({', '.join(failing)}); each start is billed. "
                f"Their logs: `python -m stacks logs {stack} {worker}`"
            )
    return lines


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def text_report(stack: str, found: list[Spend], days: int) -> str:
    lines = [f"{stack}: RunPod over the last {days} days, billed vs estimated"]
    for spend in found:
        flag = f"  OVER by more than {OVER:.0%}" if spend.over else ""
        lines.append(
            f"  {spend.name:<12} billed {_usd(spend.billed):>10}  "
            f"estimated {_usd(spend.estimated):>10}{flag}"
        )
    total = sum(spend.billed for spend in found)
    lines.append(f"  {'total':<12} billed {_usd(total):>10}")
    return "\n".join(lines)


def overspend_lines(stack: str, found: list[Spend], days: int) -> list[str]:
    """A Markdown line per endpoint billed more than OVER above its estimate."""
    return [
        f"- Spend: `{stack}`'s {spend.name} endpoint was billed {_usd(spend.billed)} in "
        f"{days} days, over {OVER:.0%} above its estimate of {_usd(spend.estimated)} "
        "(`python -m stacks cost`)"
        for spend in found
        if spend.over
    ]
