"""The GCP APIs a Tandem stack uses, enabled on its project."""

import pulumi
import pulumi_gcp as gcp

from infra.config import Scope

APIS = (
    "cloudresourcemanager.googleapis.com",  # project IAM bindings
    "serviceusage.googleapis.com",  # enabling the others
    "run.googleapis.com",
    "sqladmin.googleapis.com",
    "secretmanager.googleapis.com",
    "artifactregistry.googleapis.com",
    "storage.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
    "cloudscheduler.googleapis.com",
    "monitoring.googleapis.com",
)


class ProjectServices(pulumi.ComponentResource):
    def __init__(self, name: str, scope: Scope, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tandem:infra:ProjectServices", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.services = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=scope.project,
                service=api,
                disable_on_destroy=False,  # other stacks in the project may still use it
                opts=child,
            )
            for api in APIS
        ]
        self.register_outputs({"services": [s.service for s in self.services]})
