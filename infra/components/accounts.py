"""Service accounts with their project roles: one helper for the API's and the deployer's."""

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig


def service_account(
    name: str,
    config: StackConfig,
    purpose: str,
    roles: tuple[str, ...],
    parent: pulumi.Resource,
) -> tuple[gcp.serviceaccount.Account, pulumi.Output[str]]:
    """Account `tandem-<stack>-<purpose>` holding `roles` on the project, and its IAM member
    string (`serviceAccount:<email>`)."""
    child = pulumi.ResourceOptions(parent=parent)
    account = gcp.serviceaccount.Account(
        f"{name}-account",
        project=config.project,
        account_id=f"tandem-{config.stack}-{purpose}"[:30],
        display_name=f"Tandem {purpose} ({config.stack})",
        opts=child,
    )
    member = account.email.apply(lambda email: f"serviceAccount:{email}")
    for role in roles:
        gcp.projects.IAMMember(
            f"{name}-{role.split('/')[1].replace('.', '-')}",
            project=config.project,
            role=role,
            member=member,
            opts=child,
        )
    return account, member
