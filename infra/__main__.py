"""The Pulumi program: one stack of Tandem (see README, "Deploy"). It reads the typed config and
wires the components; a review stack takes its base stack's project resources from that stack's
outputs and declares none of its own."""

import json

import pulumi
import pulumi_gcp as gcp

from app.core import keys
from app.core.config import Settings
from gpu_worker.common.worker_types import WORKER_TYPES
from infra.components.api_service import ApiService
from infra.components.buckets import Buckets, storage_env
from infra.components.ci_identity import CiIdentity
from infra.components.database import Database
from infra.components.gpu_endpoint import GpuEndpoint, runpod_secret
from infra.components.jobs import Jobs
from infra.components.monitoring import Monitoring
from infra.components.project_services import ProjectServices
from infra.components.registry import Registry
from infra.components.run_spec import vpc_egress
from infra.components.secrets import HMAC_SECRET, TENANT_KEKS, Secrets
from infra.config import load
from infra.cost import gpu_prices
from infra.runpod.resources import ApiDeployments


def worker_limits(name: str) -> dict[str, str]:
    """What a worker caps itself, as the API caps requests (its default MAX_N): vLLM takes
    `n` up to 16384 otherwise."""
    if WORKER_TYPES[name].package != "llm":
        return {}
    return {"VLLM_MAX_N_SEQUENCES": str(Settings.model_fields["max_n"].default)}


config = load()
scope = config.scope
gpu = config.gpu.endpoints()
base = None
if config.base_stack:
    org, project = pulumi.get_organization(), pulumi.get_project()
    base = pulumi.StackReference("base", stack_name=f"{org}/{project}/{config.base_stack}")
    after_apis = None  # the base stack enabled them
else:
    services = ProjectServices("services", scope)
    after_apis = pulumi.ResourceOptions(depends_on=services.services)

registry = Registry(
    "registry",
    scope,
    config.images,
    deploys=config.deployed_images,
    base=(base.require_output("image_repository"), base.require_output("runpod_registry_auth_id"))
    if base
    else None,
    opts=after_apis,
)
# Uploads: a GCS bucket of the stack's own, or the Supabase project's bucket (no GCS bucket).
buckets = (
    Buckets(
        "buckets",
        scope,
        config.storage,
        versioned=config.environment == "prod",
        force_destroy=config.environment == "review",
        opts=after_apis,
    )
    if config.storage.provider == "gcs"
    else None
)
database = Database(
    "database",
    scope,
    config.database,
    supabase_url=config.secrets.get("supabaseDatabaseUrl"),
    shared_instance=(
        base.require_output("database_instance"),
        base.require_output("database_connection_name"),
    )
    if base
    else None,
    opts=after_apis,
)
secret_values = {
    "database-url": database.database_url,
    "runpod-api-key": config.secrets["runpodApiKey"],
}
secret_env = {
    "DATABASE_URL": "database-url",
    "SIGNING_SECRET": HMAC_SECRET,
    "RUNPOD_API_KEY": "runpod-api-key",
    "TENANT_KEY_ENCRYPTION_KEYS": TENANT_KEKS,
}
if config.database.provider == "supabase":  # TLS verified against Supabase's CA
    secret_values["database-ca-cert"] = config.secrets["supabaseCaCert"]
    secret_env["DATABASE_CA_CERT"] = "database-ca-cert"
if "supabaseServiceKey" in config.secrets:  # Supabase Storage's writer (storage.provider)
    secret_values["supabase-service-key"] = config.secrets["supabaseServiceKey"]
    secret_env["SUPABASE_SERVICE_KEY"] = "supabase-service-key"
gpu_base = None if config.owns_gpu_endpoints else base  # the stack whose GPU endpoints serve
secrets = Secrets(
    "secrets",
    scope,
    secret_values,
    # Shared GPU workers check the base stack's HMAC secret.
    hmac_secret=gpu_base.require_output("hmac_secret") if gpu_base else None,
    kek_generation=config.api.tenant_key_generation,
    opts=after_apis,
)

if gpu_base is None:
    # The workers hold only the key derived for them, never the stack's signing secret.
    workers_key = secrets.hmac_secret.apply(lambda secret: keys.derive(secret, keys.WORKERS))
    hmac_on_runpod = runpod_secret(
        config.stack, "hmac", workers_key, "Signs the API's requests to the GPU workers"
    )
    endpoint_ids = {
        name: GpuEndpoint(
            name,
            config.stack,
            endpoint,
            image=registry.images[WORKER_TYPES[name].package],
            env={**WORKER_TYPES[name].env, **worker_limits(name)},
            secret_env={"SIGNING_KEY": hmac_on_runpod},
            registry_auth_id=registry.registry_auth_id,
        ).endpoint_id
        for name, endpoint in gpu.items()
    }
else:
    endpoint_ids = {name: gpu_base.require_output(f"{name}_endpoint_id") for name in gpu}

# Deployments (/v1/deployments) run the stack's llm worker image, pulled as its own are; what
# the API makes for them at RunPod goes with the stack (after the API, whose env names it).
deployments = (
    ApiDeployments(f"tandem-{config.stack}-deployments", stack=config.stack)
    if WORKER_TYPES["llm"].package in registry.images
    else None
)
# Where the API is reached, known before the service exists (its own env holds it): Cloud
# Run's deterministic URL. Deployments' workers call it back there; RunPod posts finished jobs
# to it when the API is public (else the API polls).
project_number = gcp.organizations.get_project_output(project_id=scope.project).number
api_url = pulumi.Output.concat(
    "https://tandem-", config.stack, "-api-", project_number, ".", scope.region, ".run.app"
)
api = ApiService(
    "api",
    scope,
    config.api,
    image=registry.images["api"],
    env={
        "ENVIRONMENT": "prod" if config.environment == "prod" else "dev",
        "INFERENCE_BACKEND": "runpod",
        "PUBLIC_URL": api_url,
        **({"WEBHOOK_BASE_URL": api_url} if config.api.public else {}),
        **storage_env(config, buckets.uploads.name if buckets else None),
        **{WORKER_TYPES[name].endpoint_variable: id_ for name, id_ in endpoint_ids.items()},
        **(
            {"DATABASE_POOL_MODE": config.database.pool_mode}
            if config.database.provider == "supabase"
            else {}
        ),
        # The models the workers' answers carry, where the stack names them (CLIP_MODEL: what
        # /v1/embeddings routes to the CLIP worker).
        **{
            setting: model
            for name, endpoint in gpu.items()
            if (setting := WORKER_TYPES[name].model_setting) and (model := endpoint.served_model())
        },
        # USD a second on each endpoint's GPUs (the dearest of its pools, at the catalog
        # snapshot's prices): what usage rows cost.
        "GPU_PRICES": json.dumps(gpu_prices(gpu)),
        **(
            {
                "DEPLOYMENT_IMAGE": registry.images[WORKER_TYPES["llm"].package],
                **(
                    {"DEPLOYMENT_IMAGEGEN_IMAGE": registry.images["imagegen"]}
                    if "imagegen" in registry.images
                    else {}
                ),
                "DEPLOYMENT_REGISTRY_AUTH_ID": registry.registry_auth_id,
                "DEPLOYMENT_NAME_PREFIX": deployments.prefix,
            }
            if deployments
            else {}
        ),
    },
    secrets=secrets,
    secret_env=secret_env,
    bucket=buckets.uploads if buckets else None,
    cloudsql_connection=database.connection_name,
    vpc_access=vpc_egress(config.database),
    account_email=base.require_output("runtime_service_account") if base else None,
    opts=after_apis,
)
jobs = Jobs(
    "jobs",
    scope,
    config.storage,
    run=api.run_spec,
    deletion_protection=config.api.deletion_protection,
    scheduler_email=base.require_output("jobs_service_account") if base else None,
    opts=after_apis,
)

if base is None:  # review stacks share their base stack's alerting and CI identity
    Monitoring(
        "monitoring",
        scope,
        config.monitoring,
        api_url=api.url,
        service_name=api.service.name,
        database_instance=database.instance_name,
        opts=after_apis,
    )
    pulumi.export("image_repository", registry.repository)
    pulumi.export("runpod_registry_auth_id", registry.registry_auth_id)
    pulumi.export("jobs_service_account", jobs.scheduler_email)
    pulumi.export("hmac_secret", secrets.hmac_secret)
if base is None and config.ci.github_repository:
    # A stack without a base has accounts of its own; the config requires the repository's id.
    assert api.account and jobs.scheduler and registry.puller and config.ci.github_repository_id
    ci = CiIdentity(
        "ci",
        scope,
        environment=config.environment,
        repository=config.ci.github_repository,
        repository_id=config.ci.github_repository_id,
        workload_accounts={
            "api": api.account,
            "jobs": jobs.scheduler,
            "runpod-pull": registry.puller,
        },
        key_accounts=["runpod-pull"],
        opts=after_apis,
    )
    pulumi.export("deployer_service_account", ci.deployer.email)
    pulumi.export("reader_service_account", ci.reader.email)
    pulumi.export("workload_identity_provider", ci.provider.name)

pulumi.export("api_url", api.url)
for name, endpoint_id in endpoint_ids.items():
    pulumi.export(f"{name}_endpoint_id", endpoint_id)
if buckets:
    pulumi.export("uploads_bucket", buckets.uploads.name)
pulumi.export("database_instance", database.instance_name)
pulumi.export("database_connection_name", database.connection_name)
pulumi.export("runtime_service_account", api.run_spec.account_email)
pulumi.export("retention_job", jobs.retention.name)
