"""The API on Cloud Run v2, with its own service account holding only the roles it needs.

Plain settings go in as env values; secrets only as Secret Manager references
(`secret_key_ref`) pinned to the version this stack wrote (a new value rolls a new revision),
each readable by this service account alone. Cloud SQL is mounted at /cloudsql. The public
invoker binding exists only when `api.public` is true. The service (and the jobs that run
with its account, `access`) waits for every grant of that account: Cloud Run checks secret
access when a revision deploys.
"""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.components.accounts import service_account
from infra.components.secrets import Secrets
from infra.config import StackConfig

# Project roles of the runtime service account; bucket and secret access are granted on the
# bucket and on each secret, not project-wide.
RUNTIME_ROLES = (
    "roles/cloudsql.client",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
)


def cloudsql_volume(connection: pulumi.Input[str] | None) -> tuple[list, list]:
    """The template volume and container mount of Cloud SQL at /cloudsql (none without it)."""
    if connection is None:
        return [], []
    volume = {"name": "cloudsql", "cloud_sql_instance": {"instances": [connection]}}
    return [volume], [{"name": "cloudsql", "mount_path": "/cloudsql"}]


class ApiService(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        image: pulumi.Input[str],
        env: dict[str, pulumi.Input[str]],
        secrets: Secrets,
        secret_env: dict[str, str],
        bucket: gcp.storage.Bucket,
        cloudsql_connection: pulumi.Input[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`secret_env`: env variable -> key in `secrets` (e.g. DATABASE_URL -> database-url)."""
        super().__init__("tandem:infra:ApiService", name, None, opts)
        child = children(self, opts)
        api = config.api
        self.account, member, roles = service_account(name, config, "api", RUNTIME_ROLES, child)
        uploads = gcp.storage.BucketIAMMember(
            f"{name}-uploads-access",
            bucket=bucket.name,
            role="roles/storage.objectAdmin",
            member=member,
            opts=child,
        )
        # Signed URLs for the workers are signed through IAM signBlob as itself: no key files.
        sign = gcp.serviceaccount.IAMMember(
            f"{name}-sign-as-self",
            service_account_id=self.account.name,
            role="roles/iam.serviceAccountTokenCreator",
            member=member,
            opts=child,
        )
        readers = [secrets.grant_access(key, member) for key in sorted(set(secret_env.values()))]
        self.access: list[pulumi.Resource] = [*roles, uploads, sign, *readers]

        # The container's env and Cloud SQL mount, which the jobs run with too.
        self.envs = [{"name": key, "value": value} for key, value in sorted(env.items())]
        self.envs += [
            {
                "name": var,
                "value_source": {
                    "secret_key_ref": {
                        "secret": secrets.secrets[key].secret_id,
                        "version": secrets.versions[key].version,
                    }
                },
            }
            for var, key in sorted(secret_env.items())
        ]
        self.volumes, self.volume_mounts = cloudsql_volume(cloudsql_connection)
        probe = {"http_get": {"path": "/health", "port": 8080}}
        self.service = gcp.cloudrunv2.Service(
            f"{name}-service",
            name=f"tandem-{config.stack}-api",
            project=config.project,
            location=config.region,
            ingress="INGRESS_TRAFFIC_ALL",
            deletion_protection=api.deletion_protection,
            invoker_iam_disabled=False,
            labels=config.labels,
            template={
                "service_account": self.account.email,
                "max_instance_request_concurrency": api.concurrency,
                "scaling": {
                    "min_instance_count": api.min_instances,
                    "max_instance_count": api.max_instances,
                },
                "labels": config.labels,
                "volumes": self.volumes,
                "containers": [
                    {
                        "image": image,
                        "ports": {"container_port": 8080},
                        "envs": self.envs,
                        "resources": {
                            "limits": {"cpu": api.cpu, "memory": api.memory},
                            # Never throttled between requests: the API's job poller runs in the
                            # background (an idle instance still stops, scaling to zero).
                            "cpu_idle": False,
                            "startup_cpu_boost": True,
                        },
                        "startup_probe": {
                            **probe,
                            "period_seconds": 2,
                            "failure_threshold": 30,
                            "timeout_seconds": 2,
                        },
                        "liveness_probe": {**probe, "period_seconds": 30, "timeout_seconds": 3},
                        "volume_mounts": self.volume_mounts,
                    }
                ],
            },
            opts=children(self, opts, after=self.access),
        )
        if api.public:
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-public",
                project=config.project,
                location=config.region,
                name=self.service.name,
                role="roles/run.invoker",
                member="allUsers",
                opts=child,
            )
        self.url = self.service.uri
        self.register_outputs({"url": self.url, "service_account": self.account.email})
