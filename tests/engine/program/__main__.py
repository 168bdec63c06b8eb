"""The engine tests' Pulumi program: Tandem's GPU endpoints (infra.components.gpu_endpoint,
with the real RunPod providers) from a Tandem stack config, on an image the emulator runs as
the controlled test worker. A stack whose database comes from another stack (review stacks)
reads that stack's outputs through a StackReference, as the real program does."""

import pulumi

from infra.components.gpu_endpoint import GpuEndpoint
from infra.config import load
from tests.engine import HMAC_SECRET

config = load()
image = pulumi.Config("test").require("image")
workers = {
    name: GpuEndpoint(
        name,
        config,
        endpoint,
        image=image,
        env={"TASK": name},
        secret_env={"EMBEDDING_HMAC_SECRET": HMAC_SECRET},
    )
    for name, endpoint in config.gpu.endpoints().items()
}
for name, worker in workers.items():
    pulumi.export(f"{name}_endpoint_id", worker.endpoint_id)
if shared := config.database.instance_from_stack:
    org, project = pulumi.get_organization(), pulumi.get_project()
    reference = pulumi.StackReference("shared", stack_name=f"{org}/{project}/{shared}")
    pulumi.export("shared_llm_endpoint_id", reference.require_output("llm_endpoint_id"))
