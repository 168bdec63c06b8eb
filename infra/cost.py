"""The stack's monthly cost, estimated from what the program declares (the plan's resources) and
the stack's expected usage, as Infracost does for Terraform: per resource, what it costs
whatever the traffic (`always_on`) and at the expected usage (`usage`). GCP prices come from
the dated table beside this file (infra/prices.json, with its source); RunPod's from its catalog
(`GET /v2/catalog/gpus` at plan time, or the dated snapshot offline). A price that is not known
makes that resource's estimate unknown, never $0.

`python -m infra.cost comment HEAD.json [BASE.json]` renders the pull request's comment from
two `python -m infra.plan --json` outputs: the stack's estimate, and its change against the
base branch's. `python -m infra.cost policy-config --stack S` writes the policy pack's config of
the stack's budget (budget.monthlyUsd) and expected usage.
"""

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runpod_api import catalog

if TYPE_CHECKING:  # the policy pack imports this module without the program's dependencies
    from infra.config import GpuEndpointConfig, StackConfig

PRICES = json.loads(Path(__file__).with_name("prices.json").read_text())
HOURS = 730  # a month, as cloud prices count it
SECONDS = HOURS * 3600
SQL_DISK_GB = 10  # the instance's disk (Cloud SQL's default size; the program sets none)
IMAGE_GB = {"api": 0.4, "llm": 9.0, "clip": 6.0, "transcribe": 6.0, "imagegen": 7.0}
REQUEST_SECONDS = 0.1  # an API request's instance time, beyond its minimum instances
JOB_RUNS = 30  # a Cloud Run job's runs a month (the daily retention; a deploy's migration)
JOB_SECONDS = 60
SECRET_ACCESSES = 10_000  # a month, per secret (each API instance reads each at its start)


@dataclass(frozen=True)
class Expected:
    """What a stack expects to serve in a month (its config says), for the usage-based lines."""

    stack: str
    requests: int = 0
    storage_gb: float = 10.0
    active_hours: dict[str, float] = field(default_factory=dict)  # by worker type
    images: list[str] = field(default_factory=lambda: ["api"])  # in its image repository
    # RunPod's bill of the last 30 days by worker type, when the stack has history: the usage
    # its endpoints' estimate takes instead of active_hours (`python -m infra.plan --billed`).
    billed: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, config: "StackConfig") -> "Expected":
        return cls(
            config.stack,
            config.api.expected_requests_per_month,
            config.storage.expected_gb,
            {name: gpu.expected_active_hours for name, gpu in config.gpu.root.items()},
            config.deployed_images,
        )


@dataclass(frozen=True)
class Cost:
    """One resource's monthly estimate in USD (None: a price is unknown) and how it was made."""

    resource: str
    kind: str
    always_on: float | None
    usage: float | None
    basis: str

    @property
    def monthly(self) -> float | None:
        if self.always_on is None or self.usage is None:
            return None
        return self.always_on + self.usage


@dataclass(frozen=True)
class Estimate:
    costs: list[Cost]
    prices: str  # where the prices come from, with their dates

    @property
    def total(self) -> float:
        """The known part of the total (`unknown` names the rest)."""
        return sum(cost.monthly or 0.0 for cost in self.costs)

    @property
    def unknown(self) -> list[str]:
        return [cost.resource for cost in self.costs if cost.monthly is None]

    def most_costly(self, count: int = 3) -> list[Cost]:
        return sorted(self.costs, key=lambda c: c.monthly or 0.0, reverse=True)[:count]

    def as_json(self) -> dict[str, Any]:
        return {
            "total": round(self.total, 2),
            "unknown": self.unknown,
            "prices": self.prices,
            "resources": [asdict(cost) | {"monthly": cost.monthly} for cost in self.costs],
        }


def estimate(
    resources: list[dict[str, Any]],
    expected: Expected,
    gpus: list[dict[str, Any]],
    gpu_prices: str,
) -> Estimate:
    """The monthly estimate of `resources` (`{type, name, inputs}`) at `expected` usage,
    RunPod's prices read in `gpus` (the catalog; `gpu_prices` says which and of when)."""
    costs = [
        cost for resource in resources if (cost := _cost(resource, expected, gpus)) is not None
    ]
    prices = f"GCP list prices of {PRICES['date']} (infra/prices.json); RunPod: {gpu_prices}"
    return Estimate(costs, prices)


def _cost(resource: dict[str, Any], expected: Expected, gpus: list[dict[str, Any]]) -> Cost | None:
    inputs, name = resource["inputs"], resource["name"]
    match resource["type"]:
        case "gcp:cloudrunv2/service:Service":
            return _cloud_run(name, inputs, expected)
        case "gcp:cloudrunv2/job:Job":
            return _cloud_run_job(name, inputs)
        case "gcp:sql/databaseInstance:DatabaseInstance":
            return _cloud_sql(name, inputs)
        case "gcp:storage/bucket:Bucket":
            gb = expected.storage_gb
            price = PRICES["storage"]["standardGbMonth"]
            return Cost(name, "Cloud Storage bucket", 0.0, gb * price, f"{gb:g} GB expected")
        case "gcp:secretmanager/secretVersion:SecretVersion":
            prices = PRICES["secretManager"]
            accesses = SECRET_ACCESSES / 10_000 * prices["accessesPer10k"]
            basis = f"an active version, {SECRET_ACCESSES:,} accesses"
            return Cost(
                name, "Secret Manager secret", prices["activeVersionMonth"], accesses, basis
            )
        case "gcp:artifactregistry/repository:Repository":
            gb = sum(IMAGE_GB.get(image, 5.0) for image in expected.images)
            prices = PRICES["artifactRegistry"]
            stored = max(0.0, gb - prices["freeGb"]) * prices["gbMonth"]
            return Cost(name, "Artifact Registry", stored, 0.0, f"~{gb:g} GB of images")
        case "gcp:cloudscheduler/job:Job":
            price = PRICES["cloudScheduler"]["jobMonth"]
            return Cost(name, "Cloud Scheduler job", price, 0.0, "one job")
        case "pulumi-python:dynamic:Resource" if "gpu" in inputs and "workers" in inputs:
            return _runpod_endpoint(name, inputs, expected, gpus)
    return None


def _cloud_run(name: str, inputs: dict[str, Any], expected: Expected) -> Cost:
    template = inputs["template"]
    limits = template["containers"][0]["resources"]["limits"]
    vcpu, gib = float(limits["cpu"]), _gib(limits["memory"])
    prices = PRICES["cloudRun"]
    per_second = vcpu * prices["instanceVcpuSecond"] + gib * prices["instanceGibSecond"]
    minimum = int(template.get("scaling", {}).get("minInstanceCount") or 0)
    requests = expected.requests
    usage = requests * REQUEST_SECONDS * per_second
    basis = (
        f"{minimum} min instance(s) of {vcpu:g} vCPU, {gib:g} GiB always on; "
        f"{requests:,} requests x {REQUEST_SECONDS:g} s"
    )
    return Cost(name, "Cloud Run service", minimum * SECONDS * per_second, usage, basis)


def _cloud_run_job(name: str, inputs: dict[str, Any]) -> Cost:
    limits = inputs["template"]["template"]["containers"][0].get("resources", {}).get("limits", {})
    vcpu, gib = float(limits.get("cpu", 1)), _gib(limits.get("memory", "512Mi"))
    prices = PRICES["cloudRun"]
    per_second = vcpu * prices["instanceVcpuSecond"] + gib * prices["instanceGibSecond"]
    usage = JOB_RUNS * JOB_SECONDS * per_second
    return Cost(name, "Cloud Run job", 0.0, usage, f"{JOB_RUNS} runs x {JOB_SECONDS} s")


def _cloud_sql(name: str, inputs: dict[str, Any]) -> Cost:
    settings = inputs["settings"]
    tier = settings["tier"]
    prices = PRICES["cloudSql"]
    high_availability = settings.get("availabilityType") == "REGIONAL"
    copies = 2 if high_availability else 1
    if (hourly := prices["sharedCoreHour"].get(tier)) is None:
        custom = re.fullmatch(r"db-custom-(\d+)-(\d+)", tier)
        if custom is None:
            return Cost(name, "Cloud SQL instance", None, 0.0, f"no price for tier {tier}")
        vcpus, memory_gb = int(custom[1]), int(custom[2]) / 1024
        hourly = vcpus * prices["vcpuHour"] + memory_gb * prices["memoryGbHour"]
    disk = SQL_DISK_GB * prices["ssdGbMonth"]
    instance = copies * (hourly * HOURS + disk)
    backups = SQL_DISK_GB * prices["backupGbMonth"]  # about one disk's worth kept
    ha = ", high availability (x2)" if high_availability else ""
    basis = f"{tier}{ha}, {SQL_DISK_GB} GB SSD, backups ~{SQL_DISK_GB} GB"
    return Cost(name, "Cloud SQL instance", instance, backups, basis)


def _runpod_endpoint(
    name: str, inputs: dict[str, Any], expected: Expected, gpus: list[dict[str, Any]]
) -> Cost:
    gpu, workers = inputs["gpu"], inputs["workers"]
    selection = catalog.Selection(list(gpu["pools"]), list(gpu.get("excludedTypes") or []))
    price = catalog.price_per_second(selection.types(gpus))
    worker = name.removeprefix(f"tandem-{expected.stack}-").removesuffix("-endpoint")
    hours = expected.active_hours.get(worker, 0.0)
    minimum = int(workers.get("min") or 0)
    pools = ", ".join(selection.pools)
    if price is None:
        return Cost(name, "RunPod endpoint", None, None, f"unknown price ({pools})")
    hourly = price * 3600
    always_on = minimum * hourly * HOURS
    warm = f"{minimum} min worker(s) x ${hourly:.2f}/h ({pools}, flex price)"
    if (billed := expected.billed.get(worker)) is not None:  # what the last 30 days cost
        usage = max(0.0, billed * HOURS / 24 / 30 - always_on)
        return Cost(name, "RunPod endpoint", always_on, usage, f"{warm}; billed ${billed:,.2f} "
                    "in the last 30 days")  # fmt: skip
    basis = f"{warm}; {hours:g} h of active workers expected"
    return Cost(name, "RunPod endpoint", always_on, hours * hourly, basis)


def gpu_prices(endpoints: dict[str, "GpuEndpointConfig"]) -> dict[str, float]:
    """USD a second on each endpoint's GPUs (the dearest of them, at the catalog snapshot's
    prices): the API's GPU_PRICES, which its usage rows are priced at. An endpoint whose price
    is unknown is left out (its rows say so)."""
    gpus = catalog.snapshot()["gpus"]
    return {
        name: price
        for name, endpoint in endpoints.items()
        if (price := catalog.price_per_second(endpoint.gpu_selection().types(gpus))) is not None
    }


def _gib(memory: str) -> float:
    """`512Mi` or `2Gi` in GiB."""
    number, unit = int(memory[:-2]), memory[-2:]
    return number / 1024 if unit == "Mi" else float(number)


def _usd(value: float | None) -> str:
    return "unknown price" if value is None else f"${value:,.2f}"


def _change(head: float, base: float | None) -> str:
    if base is None:
        return "no estimate on the base branch"
    delta = head - base
    return f"{'+' if delta >= 0 else '-'}${abs(delta):,.2f}/month"


def cost_table(cost: Estimate) -> str:
    """The estimate as the plan prints it: a line per resource, dearest first, then the total."""
    lines = [f"{'monthly cost':<60} {'always on':>11} {'usage':>11} {'monthly':>13}  basis"]
    for item in sorted(cost.costs, key=lambda c: c.monthly or 0.0, reverse=True):
        lines.append(
            f"{item.kind + ' ' + item.resource:<60} {_usd(item.always_on):>11} "
            f"{_usd(item.usage):>11} {_usd(item.monthly):>13}  {item.basis}"
        )
    unknown = f" (+ unknown: {', '.join(cost.unknown)})" if cost.unknown else ""
    lines.append(f"{'total':<84} {'$' + format(cost.total, ',.2f'):>13}{unknown}")
    return "\n".join([*lines, f"prices: {cost.prices}"])


def table(plan: dict[str, Any]) -> list[str]:
    """A plan's estimate (`--json`'s `cost`) as Markdown table rows, its total last."""
    cost = plan["cost"]
    lines = [
        "| Resource | Kind | Always on | Usage-based | Monthly | Basis |",
        "|---|---|--:|--:|--:|---|",
    ]
    for item in sorted(cost["resources"], key=lambda c: c["monthly"] or 0.0, reverse=True):
        lines.append(
            f"| {item['resource']} | {item['kind']} | {_usd(item['always_on'])} | "
            f"{_usd(item['usage'])} | {_usd(item['monthly'])} | {item['basis']} |"
        )
    unknown = f" (+ unknown: {', '.join(cost['unknown'])})" if cost["unknown"] else ""
    lines.append(f"| **Total** | | | | **${cost['total']:,.2f}**{unknown} | |")
    return lines


def comment(head: dict[str, Any], base: dict[str, Any] | None, stack: str) -> str:
    """The PR comment's Markdown: the stack's estimate at the PR's head and its change."""
    total = head["cost"]["total"]
    base_total = base["cost"]["total"] if base and "cost" in base else None
    lines = [
        f"### Monthly cost of `{stack}`: ${total:,.2f} ({_change(total, base_total)})",
        "",
        *table(head),
        "",
        f"_Estimate: {head['cost']['prices']}. Usage-based lines use the stack's expected "
        "usage (api.expectedRequestsPerMonth, storage.expectedGb, "
        "gpu.&lt;type&gt;.expectedActiveHours)._",
    ]
    return "\n".join(lines) + "\n"


def _read(path: Path) -> dict[str, Any] | None:
    """A plan's JSON; None when there is none (the base branch's plan failed)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def policy_config(config: "StackConfig") -> dict[str, Any]:
    """The policy pack's config (`--policy-pack-config`) for a stack's budget policy."""
    expected = asdict(Expected.of(config))
    return {"within-budget": {"monthlyUsd": config.budget.monthly_usd, "expected": expected}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.cost", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("comment", help="the PR comment of two plans' estimates")
    render.add_argument("head", type=Path, help="python -m infra.plan --json at the PR's head")
    render.add_argument("base", type=Path, nargs="?", help="the same on the base branch")
    render.add_argument("--stack", default="dev")
    pack = commands.add_parser("policy-config", help="the policy pack's config for a stack")
    pack.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    if args.command == "policy-config":
        from infra.config import ConfigError, stack_file

        try:
            config = stack_file(args.stack, stand_in_secrets=("runpodApiKey",))
        except ConfigError as exc:
            sys.exit(f"invalid config: {exc}")
        print(json.dumps(policy_config(config), indent=2))
        return
    head = json.loads(args.head.read_text())
    base = _read(args.base) if args.base else None
    if "cost" not in head:
        sys.exit(f"{args.head} has no cost estimate: make it with python -m infra.plan --json")
    sys.stdout.write(comment(head, base, args.stack))


if __name__ == "__main__":
    main()
