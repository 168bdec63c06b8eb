"""Who deploys: a deployer service account that GitHub Actions of one repository impersonate
through Workload Identity Federation (OIDC), so CI holds no JSON key."""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.components.accounts import service_account
from infra.config import StackConfig

GITHUB_OIDC = "https://token.actions.githubusercontent.com"
DEPLOYER_ROLES = (
    "roles/run.admin",
    "roles/cloudsql.admin",
    "roles/secretmanager.admin",
    "roles/storage.admin",
    "roles/artifactregistry.admin",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.serviceAccountUser",
    "roles/resourcemanager.projectIamAdmin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/monitoring.editor",
    "roles/cloudscheduler.admin",
)


class CiIdentity(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        repository: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tandem:infra:CiIdentity", name, None, opts)
        child = children(self, opts)
        self.pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            project=config.project,
            workload_identity_pool_id=f"tandem-{config.stack}-github"[:32],
            display_name="GitHub Actions",
            opts=child,
        )
        self.provider = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-github",
            project=config.project,
            workload_identity_pool_id=self.pool.workload_identity_pool_id,
            workload_identity_pool_provider_id="github",
            oidc={"issuer_uri": GITHUB_OIDC},
            attribute_mapping={
                "google.subject": "assertion.sub",
                "attribute.repository": "assertion.repository",
                "attribute.ref": "assertion.ref",
            },
            # Tokens from any other repository are refused before any binding is looked at.
            attribute_condition=f"assertion.repository == '{repository}'",
            opts=child,
        )
        self.deployer, _, _ = service_account(name, config, "deployer", DEPLOYER_ROLES, child)
        gcp.serviceaccount.IAMMember(
            f"{name}-github-impersonates",
            service_account_id=self.deployer.name,
            role="roles/iam.workloadIdentityUser",
            member=self.pool.name.apply(
                lambda pool: (
                    f"principalSet://iam.googleapis.com/{pool}/attribute.repository/{repository}"
                )
            ),
            opts=child,
        )
        self.register_outputs(
            {"deployer": self.deployer.email, "workload_identity_provider": self.provider.name}
        )
