"""How the API's containers run (`RunSpec`), shared by the API service and the Cloud Run jobs
that run as it (migrations, retention): image, account, env, Cloud SQL mount, network."""

from dataclasses import dataclass
from typing import cast

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.config import DatabaseConfig, Scope

# Cloud Run's template parts, as the API service and the jobs running as it share them.
Env = gcp.cloudrunv2.ServiceTemplateContainerEnvArgsDict
Volume = gcp.cloudrunv2.ServiceTemplateVolumeArgsDict
VolumeMount = gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgsDict
VpcAccess = gcp.cloudrunv2.ServiceTemplateVpcAccessArgsDict


@dataclass(frozen=True)
class RunSpec:
    """How the API's containers run: image, service account, env, Cloud SQL mount and network,
    and the grants to wait for before anything runs as that account."""

    image: pulumi.Input[str]
    account_email: pulumi.Output[str]
    envs: list[Env]
    volumes: list[Volume]
    volume_mounts: list[VolumeMount]
    vpc_access: VpcAccess | None
    access: list[pulumi.Resource]


def cloudsql_volume(
    connection: pulumi.Input[str] | None,
) -> tuple[list[Volume], list[VolumeMount]]:
    """The template volume and container mount of Cloud SQL at /cloudsql (none without it)."""
    if connection is None:
        return [], []
    volume: Volume = {"name": "cloudsql", "cloud_sql_instance": {"instances": [connection]}}
    return [volume], [{"name": "cloudsql", "mount_path": "/cloudsql"}]


def vpc_egress(db: DatabaseConfig) -> VpcAccess | None:
    """Direct VPC egress to a private-IP Cloud SQL instance's network (private ranges only)."""
    if db.private_network is None:
        return None
    return {
        "network_interfaces": [{"network": db.private_network, "subnetwork": db.subnetwork}],
        "egress": "PRIVATE_RANGES_ONLY",
    }


def api_job(
    resource_name: str,
    parent: pulumi.ComponentResource,
    opts: pulumi.ResourceOptions | None,
    scope: Scope,
    run: RunSpec,
    command: str,
    *,
    deletion_protection: bool,
    timeout_s: int,
    max_retries: int,
    env: list[Env] | None = None,
) -> gcp.cloudrunv2.Job:
    """The Cloud Run job `tandem-<stack>-<command>`, a child of `parent`: one task running
    `python -m app <command>` as the API runs (`run`), with `env` beside the API's, made once
    the API's account holds its grants."""
    # A job's container, volumes and network are the same Cloud Run messages as a service's,
    # which pulumi-gcp types once per resource: the service's types, cast.
    template = cast(
        gcp.cloudrunv2.JobTemplateArgsDict,
        {
            "labels": scope.labels,
            "task_count": 1,
            "template": {
                "service_account": run.account_email,
                "max_retries": max_retries,
                "timeout": f"{timeout_s}s",
                "volumes": run.volumes,
                "vpc_access": run.vpc_access,
                "containers": [
                    {
                        "image": run.image,
                        "commands": ["python"],
                        "args": ["-m", "app", command],
                        "envs": [*run.envs, *(env or [])],
                        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
                        "volume_mounts": run.volume_mounts,
                    }
                ],
            },
        },
    )
    return gcp.cloudrunv2.Job(
        resource_name,
        name=f"tandem-{scope.stack}-{command}",
        project=scope.project,
        location=scope.region,
        deletion_protection=deletion_protection,
        labels=scope.labels,
        template=template,
        opts=children(parent, opts, after=run.access),
    )
