"""Service accounts with their project roles: one helper for the API's and the deployer's."""

import pulumi
import pulumi_gcp as gcp

from infra.config import Scope


def service_account(
    name: str,
    scope: Scope,
    purpose: str,
    roles: tuple[str, ...],
    child: pulumi.ResourceOptions,
) -> tuple[gcp.serviceaccount.Account, pulumi.Output[str], list[gcp.projects.IAMMember]]:
    """Account `tandem-<stack>-<purpose>` (created with the options `child`) holding `roles` on
    the project, its IAM member string (`serviceAccount:<email>`) and the role grants (for
    what must wait until the account may act)."""
    account = gcp.serviceaccount.Account(
        f"{name}-account",
        project=scope.project,
        account_id=f"tandem-{scope.stack}-{purpose}"[:30],
        display_name=f"Tandem {purpose} ({scope.stack})",
        opts=child,
    )
    member = account.email.apply(lambda email: f"serviceAccount:{email}")
    grants = [
        gcp.projects.IAMMember(
            f"{name}-{role.split('/')[1].replace('.', '-')}",
            project=scope.project,
            role=role,
            member=member,
            opts=child,
        )
        for role in roles
    ]
    return account, member, grants
