"""Who deploys from CI: GitHub Actions of one repository (by its immutable id) exchange their
OIDC token through Workload Identity Federation for one of two service accounts, so CI holds
no JSON key:

* the deployer, for `pulumi up`: on prod only the deploy workflow of a release (a tag) in the
  `prod` GitHub environment (required reviewers); on dev any workflow of the repository (pushes
  to main, and pull requests' review stacks: anyone who can push a branch can deploy to dev);
* the reader, for the daily drift check (drift.yml on main): it reads every resource and
  changes none.

Pull requests get nothing on prod. The deployer's roles do not add up to owner: it may grant
only the runtime roles on the project (a condition on projectIamAdmin), and administer and act
as only the service accounts of this stack's workloads (`workload_accounts`), granted on each.
It may read its own pool and accounts, so a refresh of the stack never meets a 403. Changing the
CI identity itself (these grants) is an owner's `pulumi up`, as its first one was.
"""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.components.accounts import service_account
from infra.components.api_service import RUNTIME_ROLES
from infra.config import Scope

GITHUB_OIDC = "https://token.actions.githubusercontent.com"
DEPLOYER_ROLES = (
    "roles/run.admin",
    "roles/cloudsql.admin",
    "roles/secretmanager.admin",
    "roles/storage.admin",
    "roles/artifactregistry.admin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/monitoring.editor",
    "roles/cloudscheduler.admin",
    "roles/iam.serviceAccountViewer",  # refresh of every account, its own included
    "roles/iam.workloadIdentityPoolViewer",  # refresh of its own pool and provider
)
READER_ROLES = (
    "roles/viewer",
    "roles/iam.securityReviewer",  # the IAM policies the stack's grants live in
    "roles/iam.workloadIdentityPoolViewer",
    "roles/secretmanager.secretAccessor",  # a refresh reads the secret versions it wrote
)
# On each workload account: change, delete and grant on it, deploy as it (and, for the RunPod
# puller, make its keys).
WORKLOAD_ACCOUNT_ROLES = ("roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountUser")


def access_conditions(repository: str, environment: str) -> tuple[str, str]:
    """The CEL conditions on a GitHub token for the deployer and for the reader of a stack."""
    workflows = f"{repository}/.github/workflows"
    read = f"assertion.job_workflow_ref == '{workflows}/drift.yml@refs/heads/main'"
    if environment == "prod":
        deploy = (
            f"assertion.sub == 'repo:{repository}:environment:prod'"
            " && assertion.ref.startsWith('refs/tags/')"
            f" && assertion.job_workflow_ref.startsWith('{workflows}/deploy.yml@refs/tags/')"
        )
    else:
        deploy = f"!({read})"
    return deploy, read


def grantable_only(roles: tuple[str, ...]) -> gcp.projects.IAMMemberConditionArgsDict:
    """An IAM condition letting projectIamAdmin grant and revoke only `roles`."""
    listed = ", ".join(f"'{role}'" for role in roles)
    return {
        "title": "runtime roles only",
        "expression": (
            f"api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([{listed}])"
        ),
    }


class CiIdentity(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        scope: Scope,
        *,
        environment: str,
        repository: str,
        repository_id: str,
        workload_accounts: dict[str, gcp.serviceaccount.Account],
        key_accounts: list[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`repository`: `owner/name`; `repository_id`: its numeric id (a repository deleted
        and made again under the same name has another); `workload_accounts`: purpose -> the
        service accounts the stack's workloads run as; `key_accounts`: those purposes whose
        keys the stack makes."""
        super().__init__("tandem:infra:CiIdentity", name, None, opts)
        child = children(self, opts)
        deploy, read = access_conditions(repository, environment)
        self.pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            project=scope.project,
            workload_identity_pool_id=f"tandem-{scope.stack}-github"[:32],
            display_name="GitHub Actions",
            opts=child,
        )
        self.provider = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-github",
            project=scope.project,
            workload_identity_pool_id=self.pool.workload_identity_pool_id,
            workload_identity_pool_provider_id="github",
            oidc={"issuer_uri": GITHUB_OIDC},
            attribute_mapping={
                "google.subject": "assertion.sub",
                "attribute.access": f"({deploy}) ? 'deploy' : 'read'",
            },
            # Any other token is refused before a binding is looked at.
            attribute_condition=f"assertion.repository_id == '{repository_id}' && "
            f"(({deploy}) || ({read}))",
            opts=child,
        )
        self.deployer, deployer, _ = service_account(name, scope, "deployer", DEPLOYER_ROLES, child)
        gcp.projects.IAMMember(
            f"{name}-deployer-grants-runtime-roles",
            project=scope.project,
            role="roles/resourcemanager.projectIamAdmin",
            member=deployer,
            condition=grantable_only(RUNTIME_ROLES),
            opts=child,
        )
        for purpose, account in workload_accounts.items():
            roles = WORKLOAD_ACCOUNT_ROLES + (
                ("roles/iam.serviceAccountKeyAdmin",) if purpose in key_accounts else ()
            )
            for role in roles:
                gcp.serviceaccount.IAMMember(
                    f"{name}-deployer-{purpose}-{role.split('.')[-1]}",
                    service_account_id=account.name,
                    role=role,
                    member=deployer,
                    opts=child,
                )
        self.reader, _, _ = service_account(
            f"{name}-reader", scope, "ci-reader", READER_ROLES, child
        )
        for access, account in (("deploy", self.deployer), ("read", self.reader)):
            gcp.serviceaccount.IAMMember(
                f"{name}-github-{access}",
                service_account_id=account.name,
                role="roles/iam.workloadIdentityUser",
                member=pulumi.Output.concat(
                    "principalSet://iam.googleapis.com/",
                    self.pool.name,
                    f"/attribute.access/{access}",
                ),
                opts=child,
            )
        self.register_outputs(
            {
                "deployer": self.deployer.email,
                "reader": self.reader.email,
                "workload_identity_provider": self.provider.name,
            }
        )
