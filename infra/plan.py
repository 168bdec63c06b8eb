"""The offline plan: the Pulumi program run under mocks with a stack's config, no cloud and no
Pulumi CLI. `python -m infra.plan --stack dev|prod|pr-<N> [--json] [--live-catalog] [--billed
OUTPUTS_JSON]` prints the resources it would declare, their monthly cost (infra/cost.py) and
the policy results (infra/policy), and exits 1 on a policy violation (a budget exceeded
included). GPU endpoints' pools are read in the dated catalog snapshot
(runpod_api/catalog-snapshot.json), and the plan says so; their prices too, unless
--live-catalog reads RunPod's catalog now; with --billed (the stack's outputs), the endpoints'
usage is RunPod's bill of the last 30 days instead of the expected active hours.

Secrets are never in a checkout (Pulumi.<stack>.yaml holds them encrypted): the plan runs with
stand-in values for them, which it never prints.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import runpy
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks
from pulumi.runtime.mocks import MockMonitor

from gpu_worker.common.worker_types import WORKER_TYPES
from infra.config import SECRET_KEYS, ConfigError, settings_config, stack_settings
from infra.cost import Estimate, Expected, cost_table, estimate
from infra.policy.rules import check, policy_config
from runpod_api import catalog
from runpod_api.client import REST_API, RunPodRest

STAND_IN = "stand-in-secret"
GET_PROJECT = "gcp:organizations/getProject:getProject"
PROJECT_NUMBER = "123456789012"  # the offline plan's project number (in Cloud Run URLs)
STAND_IN_SECRETS = ("runpodApiKey",)  # required by every stack: assumed set


class RecordingMocks(Mocks):
    """Answers every resource with its inputs plus the outputs GCP would compute, and records it."""

    def __init__(self) -> None:
        self.resources: list[dict[str, Any]] = []

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append({"type": args.typ, "name": args.name, "inputs": args.inputs})
        return f"{args.name}-id", {**args.inputs, **_computed(args)}

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == GET_PROJECT:  # its number is in Cloud Run's URLs
            return {"number": PROJECT_NUMBER, "projectId": args.args.get("projectId")}, []
        return {}, []


class RecordingMonitor(MockMonitor):
    """The mocks' resource monitor, also recording each resource's explicit ordering edges
    (`depends_on`: what it waits for beyond what its inputs carry), by resource name."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.explicit: dict[str, set[str]] = {}
        self.carried: dict[str, set[str]] = {}
        self.children: dict[str, set[str]] = {}

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method, by its name
        carried = {urn for deps in request.propertyDependencies.values() for urn in deps.urns}
        self.explicit[request.name] = {_name(u) for u in set(request.dependencies) - carried}
        self.carried[request.name] = {_name(u) for u in carried}
        if request.parent:
            self.children.setdefault(_name(request.parent), set()).add(request.name)
        return super().RegisterResource(request)

    def after(self, name: str) -> list[str]:
        """`name`'s explicit edges, a component's name standing for all of its children."""
        edges = set(self.explicit.get(name, ()))
        for component, members in self.children.items():
            if len(members) > 1 and members <= edges:
                edges = (edges - members) | {component}
        return sorted(edges)


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _computed(args: MockResourceArgs) -> dict[str, Any]:
    inputs = args.inputs
    match args.typ:
        case "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{inputs['project']}.iam.gserviceaccount.com"
            return {"email": email, "name": f"projects/{inputs['project']}/serviceAccounts/{email}"}
        case "gcp:sql/databaseInstance:DatabaseInstance":
            name = inputs.get("name", args.name)
            return {
                "name": name,
                "connectionName": f"{inputs['project']}:{inputs['region']}:{name}",
            }
        case "gcp:cloudrunv2/service:Service":
            return {"uri": f"https://{inputs['name']}.run.app"}
        case "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig":
            return {"uptimeCheckId": f"{args.name}-check"}
        case "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
            pool = inputs["workloadIdentityPoolId"]
            return {"name": f"projects/123/locations/global/workloadIdentityPools/{pool}"}
        case "gcp:secretmanager/secretVersion:SecretVersion":
            return {"version": "1"}
        case "random:index/randomPassword:RandomPassword":
            return {"result": STAND_IN}
        case "random:index/randomBytes:RandomBytes":
            return {"base64": STAND_IN}
        case "docker-build:index:Image":
            return {"ref": f"{inputs['tags'][0]}@sha256:{'0' * 64}"}
        case "gcp:artifactregistry/repository:Repository":
            location = f"projects/{inputs['project']}/locations/{inputs['location']}"
            return {"name": f"{location}/repositories/{inputs['repositoryId']}"}
        case "gcp:serviceaccount/key:Key":
            key = f"{inputs['serviceAccountId']}/keys/{args.name}-0123456789abcdef"
            return {"name": key, "privateKey": STAND_IN}
        case "pulumi:pulumi:StackReference":
            return {"outputs": _base_outputs(inputs["name"].split("/")[-1])}
    return {}


def _base_outputs(stack: str) -> dict[str, Any]:
    """The outputs a review stack reads of its base stack `stack`, as that stack exports them."""
    account = f"tandem-{stack}-{{}}@base-project.iam.gserviceaccount.com"
    return {
        "database_instance": f"{stack}-instance",
        "database_connection_name": f"base-project:europe-west1:{stack}-instance",
        "image_repository": f"europe-west1-docker.pkg.dev/base-project/tandem-{stack}",
        "runpod_registry_auth_id": f"{stack}-registry-auth-id",
        "runtime_service_account": account.format("api"),
        "jobs_service_account": account.format("jobs"),
        "hmac_secret": STAND_IN,
        **{f"{name}_endpoint_id": f"{stack}-{name}-endpoint-id" for name in WORKER_TYPES},
    }


def pulumi_config(raw: dict[str, Any]) -> dict[str, str]:
    """A stack's settings as the engine hands them to a program (objects as JSON), with
    stand-ins for the secrets."""
    config = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in raw.items()
        if not (isinstance(value, dict) and "secure" in value)
    }
    config = {
        key: str(value).lower() if isinstance(value, bool) else value
        for key, value in config.items()
    }
    for key in SECRET_KEYS:
        if f"tandem:{key}" in raw or key in STAND_IN_SECRETS:
            config[f"tandem:{key}"] = STAND_IN
    return config


def run_program(stack: str, settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every resource the program declares for `stack` (with `settings` in place of its
    stack's, when given), as the mocks saw it. It runs in a thread of its own, with its own
    event loop, so it never touches the caller's loop."""
    settings = settings if settings is not None else stack_settings(stack)
    settings_config(stack, settings, STAND_IN_SECRETS)  # a bad config fails here, clearly
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(_run_program, stack, settings).result()


def _run_program(stack: str, settings: dict[str, Any]) -> list[dict[str, Any]]:
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    loop = asyncio.new_event_loop()  # the mocks' root stack and the program share this loop
    asyncio.set_event_loop(loop)
    pulumi.runtime.settings.ROOT.set(None)  # a fresh stack, also on a second run
    pulumi.runtime.set_mocks(mocks, project="tandem", stack=stack, preview=False, monitor=monitor)
    config = pulumi_config(settings)
    secret_keys = [key for key, value in config.items() if value == STAND_IN]
    pulumi.runtime.set_all_config(config, secret_keys)

    async def program() -> None:
        runpy.run_module("infra", run_name="__main__")
        await pulumi.runtime.stack.wait_for_rpcs()

    try:
        loop.run_until_complete(program())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    for resource in mocks.resources:
        resource["after"] = monitor.after(resource["name"])
        resource["inputs_from"] = sorted(monitor.carried.get(resource["name"], ()))
    return sorted(mocks.resources, key=lambda r: (r["type"], r["name"]))


# The properties a reviewer reads, per type (dotted paths into the resource's inputs).
KEY_PROPERTIES = {
    "gcp:cloudrunv2/service:Service": (
        "template.scaling.minInstanceCount",
        "template.scaling.maxInstanceCount",
        "deletionProtection",
    ),
    "gcp:sql/databaseInstance:DatabaseInstance": (
        "settings.tier",
        "settings.availabilityType",
        "settings.backupConfiguration.pointInTimeRecoveryEnabled",
        "deletionProtection",
    ),
    "gcp:cloudrunv2/job:Job": ("template.template.containers.0.args", "deletionProtection"),
    "command:local:Command": ("create",),
    "gcp:cloudscheduler/job:Job": ("schedule", "httpTarget.uri"),
    "gcp:storage/bucket:Bucket": ("lifecycleRules.0.condition.age", "versioning.enabled"),
    "gcp:projects/iAMMember:IAMMember": ("role",),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": ("member",),
    "pulumi-python:dynamic:Resource": (
        "gpu.pools",
        "gpu.excludedTypes",
        "workers.min",
        "workers.max",
        "image",
    ),
}


def _get(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def _tidy(value: Any) -> Any:
    """Whole numbers as ints (the engine's wire format makes every number a float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def inventory(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Type, name, explicit ordering edges (`after`) and the properties that matter of each
    resource (no secret values: none of the listed properties holds one)."""
    items = []
    for resource in resources:
        paths = KEY_PROPERTIES.get(resource["type"], ())
        properties = {p: _tidy(v) for p in paths if (v := _get(resource["inputs"], p)) is not None}
        item = {"type": resource["type"], "name": resource["name"], "properties": properties}
        items.append(item | ({"after": resource["after"]} if resource.get("after") else {}))
    return items


def gpu_catalog(live: bool) -> tuple[list[dict[str, Any]], str]:
    """RunPod's GPU catalog: read now (with RUNPOD_API_KEY) or the dated snapshot; and which."""
    if not live:
        snapshot = catalog.snapshot()
        return snapshot["gpus"], f"the catalog snapshot of {snapshot['date']}"
    key = os.environ.get("RUNPOD_API_KEY")
    if not key:
        sys.exit("--live-catalog reads RunPod's catalog with RUNPOD_API_KEY, which is unset")
    base = os.environ.get("RUNPOD_REST_API", REST_API)
    with RunPodRest(key, base) as rest:
        return rest.gpus(), f"its catalog as read at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class Plan:
    """What a stack's program declares, what it costs a month, and the policies it breaks."""

    resources: list[dict[str, Any]]
    cost: Estimate
    violations: list[tuple[str, str, str]]

    def as_json(self) -> dict[str, Any]:
        return {
            "resources": inventory(self.resources),
            "violations": self.violations,
            "catalog": CATALOG_NOTE.format(date=catalog.snapshot()["date"]),
            "cost": self.cost.as_json(),
        }


CATALOG_NOTE = "GPU pools read in RunPod's catalog as of {date} (the snapshot)"


def make_plan(
    stack: str,
    settings: dict[str, Any] | None = None,
    live_catalog: bool = False,
    billed: dict[str, float] | None = None,
) -> Plan:
    """The plan of `stack` (with `settings` in place of its file's, when given); `billed`:
    RunPod's bill of the last 30 days by worker type (`billed_by_worker`), if it has history."""
    settings = settings if settings is not None else stack_settings(stack)
    config = settings_config(stack, settings, STAND_IN_SECRETS)
    resources = run_program(stack, settings)
    gpus, priced = gpu_catalog(live_catalog)
    expected = dataclasses.replace(Expected.of(config), billed=billed or {})
    cost = estimate(resources, expected, gpus, priced)
    return Plan(resources, cost, check(resources, policy_config(config)))


def endpoint_ids(outputs: dict[str, Any]) -> dict[str, str]:
    """The GPU endpoints a stack's outputs name (`<type>_endpoint_id`, as the program exports
    them and `pulumi stack output --json` gives them), by worker type."""
    return {
        name.removesuffix("_endpoint_id"): str(endpoint_id)
        for name, endpoint_id in sorted(outputs.items())
        if name.endswith("_endpoint_id")
    }


def billed_by_worker(outputs: dict[str, Any]) -> dict[str, float]:
    """RunPod's bill of the last 30 days for the endpoints of a stack's outputs, by worker
    type."""
    key = os.environ.get("RUNPOD_API_KEY")
    if not key:
        sys.exit("--billed reads RunPod's bill with RUNPOD_API_KEY, which is unset")
    end = datetime.now(UTC)
    with RunPodRest(key, os.environ.get("RUNPOD_REST_API", REST_API)) as rest:
        amounts = rest.billed(end - timedelta(days=30), end)
    return {
        worker: amounts.get(endpoint, 0.0) for worker, endpoint in endpoint_ids(outputs).items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.plan", description=__doc__)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--live-catalog",
        action="store_true",
        help="price GPUs from RunPod's catalog now (RUNPOD_API_KEY), not the dated snapshot",
    )
    parser.add_argument(
        "--billed",
        type=Path,
        metavar="OUTPUTS_JSON",
        help="the stack's outputs (pulumi stack output --json): its endpoints' usage from "
        "RunPod's bill of the last 30 days (RUNPOD_API_KEY), not expectedActiveHours",
    )
    args = parser.parse_args(argv)
    billed = billed_by_worker(json.loads(args.billed.read_text())) if args.billed else None
    try:
        plan = make_plan(args.stack, live_catalog=args.live_catalog, billed=billed)
    except ConfigError as exc:
        sys.exit(f"invalid config: {exc}")
    if args.json:
        print(json.dumps(plan.as_json(), indent=2))
    else:
        print(CATALOG_NOTE.format(date=catalog.snapshot()["date"]))
        for item in inventory(plan.resources):
            details = ", ".join(f"{key}={value}" for key, value in item["properties"].items())
            if item.get("after"):
                details += f" after={','.join(item['after'])}"
            print(f"{item['type']:<58} {item['name']:<34} {details}")
        print(f"{len(plan.resources)} resources")
        print(cost_table(plan.cost))
        for policy, name, message in plan.violations:
            print(f"POLICY {policy}: {name}: {message}")
        print(f"policies: {len(plan.violations)} violation(s)")
    sys.exit(1 if plan.violations else 0)


if __name__ == "__main__":
    main()
