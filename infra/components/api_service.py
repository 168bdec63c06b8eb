"""The API on Cloud Run v2, with its own service account holding only the roles it needs.

Plain settings go in as env values; secrets only as Secret Manager references
(`secret_key_ref`) pinned to the version this stack wrote (a new value rolls a new revision),
each readable by this service account alone. Cloud SQL is mounted at /cloudsql (through Direct
VPC egress when the instance has a private IP). The public invoker binding exists only when
`api.public` is true. The service waits for every grant of its account: Cloud Run checks secret
access when a revision deploys, and for the database migrations of its image (`Migrations`),
run by the deploy before the revision rolls out. `run_spec` is how the API's containers run,
for the jobs that run as the API.
"""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.components.accounts import service_account
from infra.components.migrations import Migrations
from infra.components.run_spec import Env, RunSpec, VpcAccess, cloudsql_volume
from infra.components.secrets import Secrets
from infra.config import ApiConfig, Scope

# Project roles of the runtime service account; bucket and secret access are granted on the
# bucket and on each secret, not project-wide.
RUNTIME_ROLES = (
    "roles/cloudsql.client",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
)


class ApiService(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        scope: Scope,
        api: ApiConfig,
        *,
        image: pulumi.Input[str],
        env: dict[str, pulumi.Input[str]],
        secrets: Secrets,
        secret_env: dict[str, str],
        bucket: gcp.storage.Bucket | None,
        cloudsql_connection: pulumi.Input[str] | None,
        vpc_access: VpcAccess | None,
        account_email: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`secret_env`: env variable -> key in `secrets` (e.g. DATABASE_URL -> database-url);
        `bucket`: the GCS uploads bucket it may write (None: uploads are elsewhere);
        `vpc_access`: the template's network (`vpc_egress`), if any; `account_email`: an
        existing account to run as (a review stack runs as its base stack's, which holds the
        project roles and may sign as itself), else one of its own (`self.account`)."""
        super().__init__("tandem:infra:ApiService", name, None, opts)
        child = children(self, opts)
        grants: list[pulumi.Resource] = []
        self.account: gcp.serviceaccount.Account | None = None
        if account_email is None:
            self.account, member, roles = service_account(name, scope, "api", RUNTIME_ROLES, child)
            account_email = self.account.email
            # Signed URLs for the workers are signed through IAM signBlob as itself: no keys.
            sign = gcp.serviceaccount.IAMMember(
                f"{name}-sign-as-self",
                service_account_id=self.account.name,
                role="roles/iam.serviceAccountTokenCreator",
                member=member,
                opts=child,
            )
            grants += [*roles, sign]
        else:
            member = pulumi.Output.concat("serviceAccount:", account_email)
        if bucket is not None:
            uploads = gcp.storage.BucketIAMMember(
                f"{name}-uploads-access",
                bucket=bucket.name,
                role="roles/storage.objectAdmin",
                member=member,
                opts=child,
            )
            grants.append(uploads)
        grants += [secrets.grant_access(key, member) for key in sorted(set(secret_env.values()))]

        envs: list[Env] = [{"name": key, "value": value} for key, value in sorted(env.items())]
        envs += [
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
        volumes, volume_mounts = cloudsql_volume(cloudsql_connection)
        self.run_spec = RunSpec(
            image=image,
            account_email=pulumi.Output.from_input(account_email),
            envs=envs,
            volumes=volumes,
            volume_mounts=volume_mounts,
            vpc_access=vpc_access,
            access=grants,
        )
        run = self.run_spec
        self.migrations = Migrations(
            f"{name}-migrations",
            scope,
            run=run,
            deletion_protection=api.deletion_protection,
            opts=child,
        )
        template: gcp.cloudrunv2.ServiceTemplateArgsDict = {
            "service_account": run.account_email,
            "max_instance_request_concurrency": api.concurrency,
            "scaling": {
                "min_instance_count": api.min_instances,
                "max_instance_count": api.max_instances,
            },
            "labels": scope.labels,
            "volumes": run.volumes,
            "vpc_access": run.vpc_access,
            "containers": [
                {
                    "image": run.image,
                    "ports": {"container_port": 8080},
                    "envs": run.envs,
                    "resources": {
                        "limits": {"cpu": api.cpu, "memory": api.memory},
                        # Never throttled between requests: the API's job poller runs in the
                        # background (an idle instance still stops, scaling to zero).
                        "cpu_idle": False,
                        "startup_cpu_boost": True,
                    },
                    "startup_probe": {
                        "http_get": {"path": "/health", "port": 8080},
                        "period_seconds": 2,
                        "failure_threshold": 30,
                        "timeout_seconds": 2,
                    },
                    "liveness_probe": {
                        "http_get": {"path": "/health", "port": 8080},
                        "period_seconds": 30,
                        "timeout_seconds": 3,
                    },
                    "volume_mounts": run.volume_mounts,
                }
            ],
        }
        self.service = gcp.cloudrunv2.Service(
            f"{name}-service",
            name=f"tandem-{scope.stack}-api",
            project=scope.project,
            location=scope.region,
            ingress="INGRESS_TRAFFIC_ALL",
            deletion_protection=api.deletion_protection,
            invoker_iam_disabled=False,
            labels=scope.labels,
            template=template,
            # A new revision only once its image's migrations have run.
            opts=children(self, opts, after=[*run.access, self.migrations.applied]),
        )
        if api.public:
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-public",
                project=scope.project,
                location=scope.region,
                name=self.service.name,
                role="roles/run.invoker",
                member="allUsers",
                opts=child,
            )
        self.url = self.service.uri
        self.register_outputs({"url": self.url, "service_account": self.run_spec.account_email})
