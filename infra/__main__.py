"""The Pulumi program: one stack of Tandem (see README, "Deploy"). It only reads the typed
config and wires the components."""

import pulumi
import pulumi_random as random

from infra.components.api_service import ApiService
from infra.components.buckets import Buckets
from infra.components.ci_identity import CiIdentity
from infra.components.database import Database
from infra.components.gpu_endpoint import GpuEndpoint
from infra.components.jobs import Jobs
from infra.components.monitoring import Monitoring
from infra.components.project_services import ProjectServices
from infra.components.registry import Registry
from infra.components.secrets import Secrets
from infra.config import load

config = load()
services = ProjectServices("services", config)
after_apis = pulumi.ResourceOptions(depends_on=services.services)

buckets = Buckets("buckets", config, opts=after_apis)
database = Database("database", config, opts=after_apis)
registry = Registry("registry", config, opts=after_apis)
hmac_secret = random.RandomPassword("hmac-secret", length=48, special=False).result
runpod_api_key = config.secrets["runpodApiKey"]
secret_values = {
    "database-url": database.database_url,
    "hmac-secret": hmac_secret,
    "runpod-api-key": runpod_api_key,
}
secret_env = {
    "DATABASE_URL": "database-url",
    "EMBEDDING_HMAC_SECRET": "hmac-secret",
    "RUNPOD_API_KEY": "runpod-api-key",
}
if "supabaseServiceKey" in config.secrets:  # for the app's own Supabase calls, if it makes any
    secret_values["supabase-service-key"] = config.secrets["supabaseServiceKey"]
    secret_env["SUPABASE_SERVICE_KEY"] = "supabase-service-key"
secrets = Secrets("secrets", config, secret_values, opts=after_apis)

IMAGE = {"llm": "llm", "embed": "llm", "clip": "clip"}  # embed: the llm worker, TASK=embed
TASK = {"llm": {"TASK": "generate"}, "embed": {"TASK": "embed"}, "clip": {}}
workers = {
    name: GpuEndpoint(
        name,
        config,
        endpoint,
        image=registry.images[IMAGE[name]],
        env=TASK[name],
        secret_env={"EMBEDDING_HMAC_SECRET": hmac_secret},
    )
    for name, endpoint in config.gpu.endpoints().items()
}
endpoint_ids = {
    f"{name.upper()}_ENDPOINT_ID": worker.endpoint_id for name, worker in workers.items()
}

api = ApiService(
    "api",
    config,
    image=registry.images["api"],
    env={
        "ENVIRONMENT": "prod" if config.environment == "prod" else "dev",
        "INFERENCE_BACKEND": "runpod",
        "STORAGE_MODE": "gcs",
        "GCS_BUCKET": buckets.uploads.name,
        **endpoint_ids,
    },
    secrets=secrets,
    secret_env=secret_env,
    bucket=buckets.uploads,
    cloudsql_connection=database.connection_name,
    opts=after_apis,
)
jobs = Jobs("jobs", config, image=registry.images["api"], api=api, opts=after_apis)

if config.environment != "review":  # review stacks share dev's CI identity and alerting
    Monitoring(
        "monitoring",
        config,
        api_url=api.url,
        service_name=api.service.name,
        database_instance=database.instance_name,
        opts=after_apis,
    )
if config.environment != "review" and config.ci.github_repository:
    ci = CiIdentity("ci", config, config.ci.github_repository, opts=after_apis)
    pulumi.export("deployer_service_account", ci.deployer.email)
    pulumi.export("workload_identity_provider", ci.provider.name)

pulumi.export("api_url", api.url)
for name, worker in workers.items():
    pulumi.export(f"{name}_endpoint_id", worker.endpoint_id)
pulumi.export("uploads_bucket", buckets.uploads.name)
pulumi.export("database_instance", database.instance_name)
pulumi.export("database_connection_name", database.connection_name)
pulumi.export("runtime_service_account", api.account.email)
pulumi.export("retention_job", jobs.retention.name)
