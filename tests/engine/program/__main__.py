"""The engine tests' Pulumi program: the RunPod part of Tandem's program (infra/__main__.py)
from a Tandem stack config, with the real RunPod providers. A stack of its own makes the
registry credential its workers pull the (private) test image with, the RunPod secret holding
its HMAC secret (`test:hmacSecret`) and the GPU endpoints (infra.components.gpu_endpoint); a
review stack uses its base stack's, read through a StackReference, as the real program does.
A stack with GPU endpoints of its own has an llm image its API deploys models on, and so the
ApiDeployments that removes what its API made when it is destroyed."""

import pulumi

from infra.components.gpu_endpoint import GpuEndpoint, runpod_secret
from infra.config import load
from infra.runpod.resources import ApiDeployments, RegistryAuth
from tests.engine import HMAC_SECRET

config = load()
test = pulumi.Config("test")
base = None
if config.base_stack:
    org, project = pulumi.get_organization(), pulumi.get_project()
    base = pulumi.StackReference("base", stack_name=f"{org}/{project}/{config.base_stack}")
if base is None:
    auth = RegistryAuth(
        f"tandem-{config.stack}-registry-auth",
        name=f"tandem-{config.stack}-test-registry",
        username=test.require("registryUsername"),
        password=test.require_secret("registryPassword"),
    )
    registry_auth_id = auth.id
    pulumi.export("runpod_registry_auth_id", registry_auth_id)
else:
    registry_auth_id = base.require_output("runpod_registry_auth_id")

if config.owns_gpu_endpoints:
    ApiDeployments(f"tandem-{config.stack}-deployments", stack=config.stack)
    # A review stack's (not copied from dev): a value of its own.
    value = test.get_secret("hmacSecret") or f"{HMAC_SECRET}-{config.stack}"
    hmac = runpod_secret(config.stack, "hmac", value, "engine tests")
for name, endpoint in config.gpu.endpoints().items():
    if config.owns_gpu_endpoints:
        endpoint_id = GpuEndpoint(
            name,
            config.stack,
            endpoint,
            image=test.require("image"),
            env={"TASK": name},
            secret_env={"EMBEDDING_HMAC_SECRET": hmac},
            registry_auth_id=registry_auth_id,
        ).endpoint_id
    else:
        endpoint_id = base.require_output(f"{name}_endpoint_id")
    pulumi.export(f"{name}_endpoint_id", endpoint_id)
