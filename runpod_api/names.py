"""The names of what a Tandem API makes at RunPod for its deployments (its runner, in app):
`<prefix>-<12 hex digits of the deployment id>`, where the prefix names the API's stack
(`tandem-deploy-<stack>`), so that the stack's destroy removes them and no other stack's (the
Pulumi program's ApiDeployments resource)."""

import re
import uuid

FLASHBOOT_SUFFIX = " -fb"  # on flashboot endpoints' names under REST API v1: old ones keep it


def stack_prefix(stack: str) -> str:
    return f"tandem-deploy-{stack}"


def deployment_name(prefix: str, deployment_id: uuid.UUID) -> str:
    return f"{prefix}-{deployment_id.hex[:12]}"


def made_by(prefix: str, name: str) -> bool:
    """Whether a template or endpoint of this name is one the API with `prefix` made."""
    name = name.removesuffix(FLASHBOOT_SUFFIX)
    return re.fullmatch(rf"{re.escape(prefix)}-[0-9a-f]{{12}}", name) is not None
