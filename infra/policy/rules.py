"""The policies as pure functions of one resource: its type and its properties (camelCase, as
both the engine and the mocks give them). Each returns the violations it finds.

`PolicyConfig` carries the choices a stack makes: whether the API may be public, which RunPod GPU
pools are allowed, how many workers an endpoint may scale to, its monthly budget. One policy is
the whole stack's: its monthly estimate within budget (`within_budget`).
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.cost import Expected, estimate
from runpod_api import catalog

if TYPE_CHECKING:  # the pack runs without the program's dependencies
    from infra.config import StackConfig

PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
# RunPod's serverless pools of A100, H100, H200 and B200 cards.
PREMIUM_POOLS = frozenset({"AMPERE_80", "ADA_80_PRO", "HOPPER_141", "BLACKWELL_180"})
SECRET_NAME = re.compile(
    r"(SECRET|PASSWORD|TOKEN|API_KEY|PRIVATE_KEY|SIGNING_KEY|DATABASE_URL)", re.I
)
RUNPOD_SECRET = re.compile(r"\{\{\s*RUNPOD_SECRET_[\w.\-/]+\s*\}\}")
PRIVATE_REGISTRY = re.compile(r"^[a-z0-9-]+-docker\.pkg\.dev/")  # Artifact Registry
# Types that carry `labels` (or `userLabels`) and must be labelled with env and stack.
LABELLED = {
    "gcp:storage/bucket:Bucket": "labels",
    "gcp:secretmanager/secret:Secret": "labels",
    "gcp:cloudrunv2/service:Service": "labels",
    "gcp:cloudrunv2/job:Job": "labels",
    "gcp:artifactregistry/repository:Repository": "labels",
    "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig": "userLabels",
}


@dataclass(frozen=True)
class PolicyConfig:
    public_api: bool = False
    allowed_gpu_pools: frozenset[str] | None = None  # None: any RunPod pool but the premium ones
    allow_premium_gpus: bool = False
    max_workers: int = 10
    monthly_budget_usd: float | None = None  # budget.monthlyUsd: the estimate must stay within
    expected: Expected | None = None  # the usage the estimate assumes (the stack's config)


def policy_config(config: "StackConfig") -> PolicyConfig:
    """The policies' settings a stack's config makes."""
    return PolicyConfig(
        public_api=config.api.public,
        monthly_budget_usd=config.budget.monthly_usd,
        expected=Expected.of(config),
    )


def no_public_bucket(typ: str, props: dict[str, Any], _config: PolicyConfig) -> list[str]:
    """No bucket readable by the public: access prevention enforced, no public IAM members."""
    if typ == "gcp:storage/bucket:Bucket" and props.get("publicAccessPrevention") != "enforced":
        return ["a bucket must enforce public access prevention"]
    if typ.startswith("gcp:storage/bucketIAM") and _public(props):
        return ["a bucket must not be readable by allUsers or allAuthenticatedUsers"]
    return []


def no_public_api_unless_chosen(typ: str, props: dict[str, Any], config: PolicyConfig) -> list[str]:
    """No public Cloud Run service unless the stack sets api.public (IAM members and
    invokerIamDisabled both checked)."""
    if config.public_api:
        return []
    if typ == "gcp:cloudrunv2/service:Service" and props.get("invokerIamDisabled"):
        return ["Cloud Run invoker IAM is disabled (public) but api.public is false"]
    if typ.startswith("gcp:cloudrunv2/serviceIam") and _public(props):
        return ["Cloud Run is invokable by allUsers/allAuthenticatedUsers but api.public is false"]
    return []


def no_literal_secrets(typ: str, props: dict[str, Any], _config: PolicyConfig) -> list[str]:
    """No secret-looking env variable with a literal value: in Cloud Run a secret_key_ref, in
    a RunPod template or endpoint a RunPod secret's reference."""
    if typ == "gcp:cloudrunv2/service:Service":
        containers = (props.get("template") or {}).get("containers") or []
        return [
            f"env {env['name']} looks secret but has a literal value: use a secret_key_ref"
            for container in containers
            for env in container.get("envs") or []
            if SECRET_NAME.search(env.get("name", "")) and env.get("value") is not None
        ]
    if "image" in props and "env" in props:  # a RunPod template or endpoint
        return [
            f"env {name} looks secret but has a literal value: use a RunPod secret "
            "({{ RUNPOD_SECRET_<name> }})"
            for name, value in (props.get("env") or {}).items()
            if SECRET_NAME.search(name) and not RUNPOD_SECRET.fullmatch(str(value))
        ]
    return []


def private_images_pulled_with_a_credential(
    typ: str, props: dict[str, Any], _config: PolicyConfig
) -> list[str]:
    """A RunPod template or endpoint on an Artifact Registry image names the registry
    credential that pulls it (RunPod cannot pull a private image without one)."""
    image = props.get("image")
    if not isinstance(image, str) or not PRIVATE_REGISTRY.match(image):
        return []
    if props.get("registry"):
        return []
    return [f"{image.split('/')[0]} is private: set its registry credential"]


def prod_api_is_warm_and_protected(
    typ: str, props: dict[str, Any], _config: PolicyConfig
) -> list[str]:
    """Cloud Run in prod keeps an instance warm and has deletion protection."""
    if typ != "gcp:cloudrunv2/service:Service" or (props.get("labels") or {}).get("env") != "prod":
        return []
    problems = []
    scaling = (props.get("template") or {}).get("scaling") or {}
    if (scaling.get("minInstanceCount") or 0) < 1:
        problems.append("prod Cloud Run needs min instances >= 1")
    if not props.get("deletionProtection"):
        problems.append("prod Cloud Run needs deletion protection")
    return problems


def gpu_endpoints_within_limits(typ: str, props: dict[str, Any], config: PolicyConfig) -> list[str]:
    """RunPod GPU pools from the allowed list (A100/H100-class only when allowed), workers
    under the cap."""
    gpu: Any = props.get("gpu")
    if not hasattr(gpu, "get"):  # only RunPod endpoints have a `gpu` (the pack's: a proxy)
        return []
    problems = []
    for pool in gpu.get("pools") or []:
        if config.allowed_gpu_pools is not None and pool not in config.allowed_gpu_pools:
            problems.append(f"GPU pool {pool!r} is not in the allowed list")
        elif pool in PREMIUM_POOLS and not config.allow_premium_gpus:
            problems.append(f"GPU pool {pool!r} needs allowPremiumGpus")
    most = (props.get("workers") or {}).get("max") or 0
    if most > config.max_workers:
        problems.append(f"workers.max {most} is over the cap of {config.max_workers}")
    return problems


def labelled_with_env_and_stack(
    typ: str, props: dict[str, Any], _config: PolicyConfig
) -> list[str]:
    """Every labelled resource carries the env and stack labels."""
    if typ == "gcp:sql/databaseInstance:DatabaseInstance":
        labels = (props.get("settings") or {}).get("userLabels") or {}
    elif typ in LABELLED:
        labels = props.get(LABELLED[typ]) or {}
    else:
        return []
    missing = [key for key in ("env", "stack") if not labels.get(key)]
    return [f"missing labels: {', '.join(missing)}"] if missing else []


RULES: dict[str, Callable[[str, dict[str, Any], PolicyConfig], list[str]]] = {
    "no-public-bucket": no_public_bucket,
    "no-public-api-unless-chosen": no_public_api_unless_chosen,
    "no-literal-secrets": no_literal_secrets,
    "private-images-pulled-with-a-credential": private_images_pulled_with_a_credential,
    "prod-api-warm-and-protected": prod_api_is_warm_and_protected,
    "gpu-endpoints-within-limits": gpu_endpoints_within_limits,
    "labelled-with-env-and-stack": labelled_with_env_and_stack,
}


def within_budget(resources: list[dict[str, Any]], config: PolicyConfig) -> list[str]:
    """The stack's monthly estimate (infra/cost.py, RunPod at the catalog snapshot's prices)
    within budget.monthlyUsd, naming the resources that cost most."""
    budget = config.monthly_budget_usd
    if budget is None or config.expected is None:
        return []
    snapshot = catalog.snapshot()
    plain = [resource | {"inputs": _plain(resource["inputs"])} for resource in resources]
    cost = estimate(plain, config.expected, snapshot["gpus"], snapshot["date"])
    if cost.total <= budget:
        return []
    most = ", ".join(
        f"{c.resource} ${c.monthly:,.2f}" for c in cost.most_costly() if c.monthly is not None
    )
    return [
        f"the monthly estimate ${cost.total:,.2f} is over budget.monthlyUsd ${budget:,.2f} "
        f"(most: {most})"
    ]


STACK = "stack"  # the name a stack-wide violation is reported under


def check(resources: list[dict[str, Any]], config: PolicyConfig) -> list[tuple[str, str, str]]:
    """(policy, resource name, message) for every violation among `resources`
    (`{"type", "name", "inputs"}` records, as the offline plan makes them), and the stack's."""
    plain = [resource | {"inputs": _plain(resource["inputs"])} for resource in resources]
    found = [
        (policy, resource["name"], message)
        for resource in plain
        for policy, rule in RULES.items()
        for message in rule(resource["type"], resource["inputs"], config)
    ]
    return found + [("within-budget", STACK, m) for m in within_budget(resources, config)]


def _public(props: dict[str, Any]) -> bool:
    members = set(props.get("members") or []) | {props.get("member")}
    return bool(members & PUBLIC_MEMBERS)


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - the engine's secret marker


def _plain(value: Any) -> Any:
    """Properties as plain dicts and lists (the pack's are proxies), with the engine's secret
    envelopes opened (values are only inspected)."""
    if isinstance(value, Mapping):
        if value.get(SECRET_SIG) is not None and "value" in value:
            return _plain(value["value"])
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(item) for item in value]
    return value
