"""The names of what a Tandem API makes at RunPod for its deployments (its runner,
app/services/deployment_runner.py): `<prefix>-<12 hex digits of the deployment id>`, where the
prefix names the API's stack (`tandem-deploy-<stack>`), so that the stack's destroy removes
them and no other stack's (infra/runpod/providers.py: ApiDeploymentsProvider)."""

import re
import uuid

FLASHBOOT_SUFFIX = " -fb"  # RunPod's, on the name of a flashboot endpoint


def stack_prefix(stack: str) -> str:
    return f"tandem-deploy-{stack}"


def deployment_name(prefix: str, deployment_id: uuid.UUID) -> str:
    return f"{prefix}-{deployment_id.hex[:12]}"


def made_by(prefix: str, name: str) -> bool:
    """Whether a template or endpoint of this name is one the API with `prefix` made."""
    name = name.removesuffix(FLASHBOOT_SUFFIX)
    return re.fullmatch(rf"{re.escape(prefix)}-[0-9a-f]{{12}}", name) is not None
