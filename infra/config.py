"""One typed view of a stack's configuration: `StackConfig`, built from `pulumi.Config`.

Every value is checked when the program starts (`pulumi preview` included), so a bad value
fails before anything is created, with one line naming the key and what it accepts. Keys live
in the `tandem` namespace (`tandem:api`, `tandem:gpu`, ...); the GCP project and region are
the provider's own `gcp:project` and `gcp:region`.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from gpu_worker.common.worker_types import WORKER_TYPES
from infra.workers import IMAGES
from runpod_api import catalog

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET_KEYS = ("runpodApiKey", "supabaseDatabaseUrl", "supabaseCaCert", "supabaseServiceKey")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ApiConfig(Section):
    public: bool = False
    min_instances: int = Field(0, ge=0, le=100, alias="minInstances")
    max_instances: int = Field(3, ge=1, le=1000, alias="maxInstances")
    concurrency: int = Field(80, ge=1, le=1000)
    cpu: Literal["1", "2", "4", "8"] = "1"
    memory: str = Field("1Gi", pattern=r"^\d+(Mi|Gi)$")
    deletion_protection: bool = Field(False, alias="deletionProtection")
    # Raise by one to rotate the key that seals tenants' RunPod keys: the new one seals, the
    # one before still opens, and the API wraps every tenant key again at its start.
    tenant_key_generation: int = Field(1, ge=1, alias="tenantKeyGeneration")
    # For the cost estimate (infra/cost.py): requests a month beyond what min instances serve.
    expected_requests_per_month: int = Field(0, ge=0, alias="expectedRequestsPerMonth")

    @model_validator(mode="after")
    def _scaling(self) -> "ApiConfig":
        if self.min_instances > self.max_instances:
            raise ValueError("minInstances must not exceed maxInstances")
        return self


class DatabaseConfig(Section):
    provider: Literal["cloudsql", "supabase"] = "cloudsql"
    # Supabase's pooler mode, as its connection string's port says: session (5432, prepared
    # statements kept: the default for a server) or transaction (6543, none kept).
    pool_mode: Literal["session", "transaction"] = Field("session", alias="poolMode")
    tier: str = "db-f1-micro"
    high_availability: bool = Field(False, alias="highAvailability")
    point_in_time_recovery: bool = Field(False, alias="pointInTimeRecovery")
    deletion_protection: bool = Field(False, alias="deletionProtection")
    # A private IP on this VPC network (`projects/<p>/global/networks/<n>`, with private services
    # access set up) instead of a public one; the API then reaches it through Direct VPC egress
    # on `subnetwork` (a subnetwork of that network in the stack's region).
    private_network: str | None = Field(
        None, alias="privateNetwork", pattern=r"^projects/[\w-]+/global/networks/[\w-]+$"
    )
    subnetwork: str | None = Field(None, pattern=r"^[\w-]+$")
    # Daily backups: when they start (UTC, HH:MM) and how many are kept.
    backup_start_time: str = Field(
        "02:00", alias="backupStartTime", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
    )
    backups_kept: int = Field(7, ge=1, le=365, alias="backupsKept")
    # When Google may restart the instance for maintenance: a weekday (1 Monday .. 7 Sunday)
    # and an hour (UTC).
    maintenance_day: int = Field(7, ge=1, le=7, alias="maintenanceDay")
    maintenance_hour: int = Field(3, ge=0, le=23, alias="maintenanceHour")
    query_insights: bool = Field(True, alias="queryInsights")

    @model_validator(mode="after")
    def _network(self) -> "DatabaseConfig":
        if (self.private_network is None) != (self.subnetwork is None):
            raise ValueError("privateNetwork and subnetwork go together (a private IP needs both)")
        if self.private_network and self.provider != "cloudsql":
            raise ValueError("privateNetwork is a Cloud SQL setting (provider: cloudsql)")
        return self


class StorageConfig(Section):
    # Where uploads live: a GCS bucket the stack creates, or a bucket of a Supabase project
    # (made in its dashboard; the secret supabaseServiceKey writes to it), each stack's objects
    # under a folder named after the stack.
    provider: Literal["gcs", "supabase"] = "gcs"
    supabase_url: str | None = Field(
        None, alias="supabaseUrl", pattern=r"^https://[a-z0-9-]+(\.[a-z0-9-]+)+/?$"
    )
    supabase_bucket: str = Field("uploads", alias="supabaseBucket", pattern=r"^[A-Za-z0-9_.-]+$")
    # Uploads (objects and their rows) older than this are deleted by the daily retention job.
    retention_days: int = Field(30, ge=1, le=3650, alias="retentionDays")
    # When it runs: cron in UTC (minute hour day-of-month month day-of-week).
    retention_schedule: str = Field(
        "17 3 * * *", alias="retentionSchedule", pattern=r"^\S+( \S+){4}$"
    )
    # GCS only: browser origins allowed to PUT and GET, and (prod) how many days a deleted or
    # overwritten upload stays recoverable as a noncurrent version.
    cors_origins: list[str] = Field(default_factory=list, alias="corsOrigins")
    noncurrent_days: int = Field(7, ge=1, le=365, alias="noncurrentDays")
    expected_gb: float = Field(10, ge=0, alias="expectedGb")  # for the cost estimate

    @model_validator(mode="after")
    def _supabase_needs_its_url(self) -> "StorageConfig":
        if (self.provider == "supabase") != (self.supabase_url is not None):
            raise ValueError("supabaseUrl is set with provider supabase, and only then")
        return self


class ImagesConfig(Section):
    """Build the images from this repository, or deploy prebuilt `ref@sha256:...` images given
    by image name (`api`, and one per GPU worker package: `llm`, `clip`, `transcribe`)."""

    build: bool = True
    refs: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _refs_by_name(cls, values: Any) -> Any:
        """`{build, <image>: ref, ...}` as written in the stack's file."""
        if not isinstance(values, dict) or "refs" in values:
            return values
        refs = {name: ref for name, ref in values.items() if name != "build"}
        if unknown := sorted(set(refs) - set(IMAGES)):
            raise ValueError(f"{unknown[0]} is no image: the images are {', '.join(IMAGES)}")
        return {"build": values.get("build", True), "refs": refs}

    def check_prebuilt(self, images: list[str]) -> None:
        """With `build: false`, each of `images` must be given as ref@sha256:..."""
        if self.build:
            return
        for name in images:
            ref = self.refs.get(name)
            if ref is None or not re.fullmatch(r"\S+@sha256:[0-9a-f]{64}", ref):
                raise ValueError(f"with images.build false, {name} must be an image ref@sha256:...")


class GpuEndpointConfig(Section):
    # In order of preference: RunPod's serverless pools (ADA_24), GPU types (NVIDIA GeForce RTX
    # 4090: its pool, less the pool's cards not named) or sizes (24gb: every pool of that size),
    # resolved through the catalog snapshot (runpod_api/catalog-snapshot.json).
    gpu_types: list[str] = Field(min_length=1, alias="gpuTypes")
    workers_min: int = Field(0, ge=0, le=100, alias="workersMin")
    workers_max: int = Field(2, ge=0, le=100, alias="workersMax")
    idle_timeout_s: int = Field(5, ge=1, le=3600, alias="idleTimeout")
    execution_timeout_s: int = Field(600, ge=5, le=24 * 3600, alias="executionTimeout")
    scaler_type: Literal["QUEUE_DELAY", "REQUEST_COUNT"] = Field("QUEUE_DELAY", alias="scalerType")
    scaler_value: int = Field(4, ge=1, alias="scalerValue")
    flashboot: bool = True
    container_disk_gb: int = Field(30, ge=5, le=500, alias="containerDiskGb")
    model: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # For the cost estimate (infra/cost.py): hours a month of workers running beyond workersMin.
    expected_active_hours: float = Field(0, ge=0, le=744 * 100, alias="expectedActiveHours")
    # RunPod network volumes mounted at /runpod-volume (model weights cached across workers;
    # each volume pins workers to its data centre: several volumes, one per data centre, for a
    # multi-region endpoint), and a registry credential for prebuilt images in a private
    # registry other than the stack's own (whose credential the stack makes): ids made in RunPod.
    network_volume_ids: list[str] | None = Field(None, min_length=1, alias="networkVolumeIds")
    registry_auth_id: str | None = Field(None, alias="registryAuthId")
    # Where workers may run (RunPod data centre ids, e.g. near the GCP region; unset: anywhere)
    # and which CUDA versions their hosts may have (unset: any).
    data_center_ids: list[str] | None = Field(None, min_length=1, alias="dataCenterIds")
    allowed_cuda_versions: list[Annotated[str, StringConstraints(pattern=r"^\d+\.\d+$")]] | None = (
        Field(None, min_length=1, alias="allowedCudaVersions")
    )

    def served_model(self) -> str | None:
        """The model id the worker's answers carry, when the stack sets it (else the worker's
        default)."""
        return self.env.get("SERVED_MODEL_NAME") or self.model

    @model_validator(mode="after")
    def _check(self) -> "GpuEndpointConfig":
        self.gpu_selection()  # UnknownGpu (a ValueError) names the choices
        if self.workers_min > self.workers_max:
            raise ValueError("workersMin must not exceed workersMax")
        return self

    def gpu_selection(self) -> catalog.Selection:
        """The pools (and types left out) `gpuTypes` names, read in the catalog snapshot."""
        return catalog.select(self.gpu_types, catalog.snapshot()["gpus"])


class GpuConfig(RootModel[dict[str, GpuEndpointConfig]]):
    """One endpoint per worker type the stack runs (gpu_worker.common.worker_types): `llm` and
    `clip` always; `embed` (text embeddings for search) and `transcribe` (speech to text) when
    set (unset: the API has no such endpoint, its <NAME>_ENDPOINT_ID is left unset)."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _worker_types(self) -> "GpuConfig":
        if unknown := sorted(set(self.root) - set(WORKER_TYPES)):
            raise ValueError(
                f"{unknown[0]} is no GPU worker type: the types are {', '.join(WORKER_TYPES)}"
            )
        required = [name for name, worker in WORKER_TYPES.items() if worker.required]
        if missing := [name for name in required if name not in self.root]:
            raise ValueError(f"{missing[0]} is required (every stack runs {', '.join(required)})")
        return self

    def __getitem__(self, name: str) -> GpuEndpointConfig:
        return self.root[name]

    def endpoints(self) -> dict[str, GpuEndpointConfig]:
        """The stack's endpoints, in the registry's order."""
        return {name: self.root[name] for name in WORKER_TYPES if name in self.root}

    def images(self) -> list[str]:
        """The worker images the endpoints run."""
        return sorted({WORKER_TYPES[name].package for name in self.root})


class MonitoringConfig(Section):
    notification_email: str | None = Field(None, alias="notificationEmail")
    billing_account: str | None = Field(None, alias="billingAccount")
    monthly_budget: float | None = Field(None, gt=0, alias="monthlyBudget")
    # Alert thresholds, each held for 5 minutes: the share of API responses that are 5xx, the
    # API's 95th percentile latency, and the Cloud SQL instance's CPU and disk use.
    max_5xx_ratio: float = Field(0.05, gt=0, le=1, alias="max5xxRatio")
    latency_p95_ms: int = Field(2000, ge=50, le=60_000, alias="latencyP95Ms")
    database_cpu: float = Field(0.8, gt=0, le=1, alias="databaseCpu")
    database_disk: float = Field(0.85, gt=0, le=1, alias="databaseDisk")


class BudgetConfig(Section):
    # The policy pack fails a preview whose monthly estimate (infra/cost.py) is over this.
    monthly_usd: float | None = Field(None, gt=0, alias="monthlyUsd")


class CiConfig(Section):
    # The repository whose workflows deploy (`owner/name`) and its numeric id, which a
    # repository made again under the same name does not have (`gh api repos/OWNER/NAME --jq .id`).
    github_repository: str | None = Field(
        None, pattern=r"^[\w.-]+/[\w.-]+$", alias="githubRepository"
    )
    github_repository_id: str | None = Field(
        None, pattern=r"^[0-9]+$", alias="githubRepositoryId", coerce_numbers_to_str=True
    )

    @model_validator(mode="after")
    def _both(self) -> "CiConfig":
        if (self.github_repository is None) != (self.github_repository_id is None):
            raise ValueError("githubRepository and githubRepositoryId go together")
        return self


@dataclass(frozen=True)
class Scope:
    """Where a stack's resources go and how they are named and labelled."""

    stack: str
    project: str
    region: str
    labels: dict[str, str]


class StackConfig(Section):
    stack: str
    environment: Literal["dev", "prod", "review"]
    project: str
    region: str = "europe-west1"
    # Review stacks: the stack whose project resources they use (APIs, image repository, Cloud
    # SQL instance, RunPod registry credential and, unless `ownGpuEndpoints`, GPU endpoints).
    base_stack: str | None = Field(None, alias="baseStack")
    own_gpu_endpoints: bool = Field(False, alias="ownGpuEndpoints")
    api: ApiConfig = ApiConfig()
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    images: ImagesConfig = ImagesConfig()
    gpu: GpuConfig
    monitoring: MonitoringConfig = MonitoringConfig()
    budget: BudgetConfig = BudgetConfig()
    ci: CiConfig = CiConfig()
    ttl_hours: int | None = Field(None, ge=1, le=24 * 30, alias="ttlHours")
    # RunPod's REST API v2 host (default https://api.runpod.io; its paths are /v2/...): the
    # local RunPod's, in tests.
    runpod_api_base: str | None = Field(
        None, alias="runpodApiBase", pattern=r"^https?://[^/\s]+/?$"
    )
    # Secret settings (SECRET_KEYS) as pulumi Outputs: present or not is all that is checked.
    secrets: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @property
    def scope(self) -> Scope:
        """Where the stack's resources go, and the labels every one carries: the stack, its
        environment and, on review stacks, their time to live."""
        labels = {"env": self.environment, "stack": self.stack, "app": "tandem"}
        if self.ttl_hours is not None:
            labels["ttl"] = f"{self.ttl_hours}h"
        return Scope(self.stack, self.project, self.region, labels)

    @property
    def owns_gpu_endpoints(self) -> bool:
        return self.base_stack is None or self.own_gpu_endpoints

    @property
    def deployed_images(self) -> list[str]:
        """The images the stack runs: the API's and, with endpoints of its own, its workers'."""
        return ["api", *(self.gpu.images() if self.owns_gpu_endpoints else [])]

    @model_validator(mode="after")
    def _environment_rules(self) -> "StackConfig":
        if "runpodApiKey" not in self.secrets:
            raise ValueError(
                "the secret tandem:runpodApiKey is missing (pulumi config set --secret "
                "runpodApiKey ...): the API and the deploy both call RunPod with it"
            )
        if self.environment == "review" and self.ttl_hours is None:
            raise ValueError("ttlHours is required on a review stack")
        if (self.environment == "review") != (self.base_stack is not None):
            raise ValueError("baseStack is set on review stacks, and only there")
        if self.own_gpu_endpoints and self.environment != "review":
            raise ValueError("ownGpuEndpoints is a review stack setting (others always own theirs)")
        self.images.check_prebuilt(self.deployed_images)
        needed = {
            "database.provider": {
                "supabaseDatabaseUrl": "postgresql://...",
                "supabaseCaCert": "-- < prod-ca-2021.crt",
            }
            if self.database.provider == "supabase"
            else {},
            "storage.provider": {"supabaseServiceKey": "sb_secret_..."}
            if self.storage.provider == "supabase"
            else {},
        }
        for setting, secrets in needed.items():
            for key, value in secrets.items():
                if key not in self.secrets:
                    raise ValueError(
                        f"{setting} supabase needs the secret tandem:{key} "
                        f"(pulumi config set --secret {key} {value})"
                    )
        return self


class ConfigError(ValueError):
    """A stack setting that cannot be used; the message names the key."""


def _key(error: ErrorDetails) -> str:
    parts = [str(p) for p in error["loc"]]
    if not parts:
        return "tandem"
    head, rest = parts[0], parts[1:]
    return f"tandem:{head}" + "".join(f".{p}" for p in rest)


def parse(values: dict[str, Any], secrets: dict[str, Any]) -> StackConfig:
    """`values` (the stack's settings, keys as in Pulumi.<stack>.yaml) as a StackConfig, or a
    ConfigError naming the first bad key."""
    try:
        return StackConfig.model_validate({**values, "secrets": secrets})
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{_key(error)}: {message}") from None


REVIEW_STACK = re.compile(r"pr-[1-9][0-9]*")
# What a review stack (`pr-<N>`) changes in dev's settings: dev's project resources (a database
# of its own on dev's instance, dev's image repository, dev's GPU endpoints unless it sets
# ownGpuEndpoints), nothing warm, at most one GPU worker per endpoint of its own, no deletion
# protection, a time to live.
REVIEW_OVERRIDES: dict[str, Any] = {
    "tandem:environment": "review",
    "tandem:baseStack": "dev",
    "tandem:ownGpuEndpoints": False,
    "tandem:ttlHours": 72,
    "tandem:budget": {"monthlyUsd": 50},  # a review stack's estimate stays small
    "tandem:api": {"minInstances": 0, "maxInstances": 2, "deletionProtection": False},
    "tandem:database": {
        "highAvailability": False,
        "pointInTimeRecovery": False,
        "deletionProtection": False,
    },
    "tandem:storage": {"retentionDays": 3},
}
REVIEW_WORKERS = {"workersMin": 0, "workersMax": 1}  # for each of dev's GPU endpoints


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: _merge(base.get(k), v) for k, v in override.items()} | {
            k: v for k, v in base.items() if k not in override
        }
    return override


def stack_settings(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """A stack's settings as in its `Pulumi.<stack>.yaml` (`namespace:key` -> value); a review
    stack `pr-<N>` has dev's settings with REVIEW_OVERRIDES."""
    import yaml

    if REVIEW_STACK.fullmatch(stack):
        dev = stack_settings("dev", root)
        gpu = {name: REVIEW_WORKERS for name in dev.get("tandem:gpu", {})}
        return _merge(dev, {**REVIEW_OVERRIDES, "tandem:gpu": gpu})
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown stack {stack!r}: no {path.name} (and not a review stack pr-<N>)"
        )
    return yaml.safe_load(path.read_text())["config"]


def stack_file(
    stack: str, root: Path = REPO_ROOT, stand_in_secrets: tuple[str, ...] = ()
) -> StackConfig:
    """The StackConfig of a stack's settings (`stack_settings`), read without the Pulumi engine
    (tests, plan)."""
    return settings_config(stack, stack_settings(stack, root), stand_in_secrets)


def settings_config(
    stack: str, settings: dict[str, Any], stand_in_secrets: tuple[str, ...] = ()
) -> StackConfig:
    """The StackConfig of `settings` (`namespace:key` -> value). Secrets there are encrypted
    (`secure:`): only their presence is known, and `stand_in_secrets` names those to assume
    set (a checkout has no stack's secrets)."""
    values: dict[str, Any] = {"stack": stack}
    secrets: dict[str, Any] = dict.fromkeys(stand_in_secrets, "stand-in")
    for key, value in settings.items():
        namespace, _, name = key.partition(":")
        if namespace == "gcp" and name in ("project", "region"):
            values[name] = value
        elif namespace == "tandem" and name in SECRET_KEYS:
            secrets[name] = value
        elif namespace == "tandem":
            values[name] = value
    return parse(values, secrets)


def load() -> StackConfig:
    """The current stack's StackConfig, from `pulumi.Config`."""
    tandem, gcp = pulumi.Config("tandem"), pulumi.Config("gcp")
    values: dict[str, Any] = {"stack": pulumi.get_stack(), "project": gcp.get("project")}
    if region := gcp.get("region"):
        values["region"] = region
    for key in (
        "environment",
        "ttlHours",
        "runpodApiBase",
        "baseStack",
        "ownGpuEndpoints",
    ):
        if (value := tandem.get(key)) is not None:
            values[key] = value
    for key in ("api", "database", "storage", "images", "gpu", "monitoring", "budget", "ci"):
        if (value := tandem.get_object(key)) is not None:
            values[key] = value
    secrets = {key: secret for key in SECRET_KEYS if (secret := tandem.get_secret(key)) is not None}
    return parse(values, secrets)
