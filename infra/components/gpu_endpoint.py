"""A RunPod GPU endpoint: a serverless template (image, env with secret values, the credential
that pulls the image) and an endpoint on it (GPU types in order of preference, scale to zero
unless the stack asks for warm workers)."""

import pulumi

from infra.config import GpuEndpointConfig
from infra.runpod.resources import Endpoint, Template

NETWORK_VOLUME = "/runpod-volume"  # where RunPod mounts an endpoint's network volume


class GpuEndpoint(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        stack: str,
        endpoint: GpuEndpointConfig,
        *,
        image: pulumi.Input[str],
        env: dict[str, pulumi.Input[str]],
        secret_env: dict[str, pulumi.Input[str]],
        registry_auth_id: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`registry_auth_id`: the RunPod credential that pulls `image` (the endpoint's own
        `registryAuthId` setting, for a prebuilt image elsewhere, wins)."""
        super().__init__("tandem:infra:GpuEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        plain = {**endpoint.env, **env}
        if endpoint.model:
            plain["MODEL_NAME"] = endpoint.model
        if endpoint.network_volume_ids:  # weights downloaded once, kept for every worker
            plain.setdefault("HF_HOME", f"{NETWORK_VOLUME}/huggingface")
        secret = {key: pulumi.Output.secret(value) for key, value in secret_env.items()}
        all_env = pulumi.Output.all(plain, secret).apply(lambda parts: {**parts[0], **parts[1]})
        self.template = Template(
            f"tandem-{stack}-{name}-template",
            image=image,
            env=all_env,
            container_disk_gb=endpoint.container_disk_gb,
            registry_auth_id=endpoint.registry_auth_id or registry_auth_id,
            opts=child,
        )
        self.endpoint = Endpoint(
            f"tandem-{stack}-{name}-endpoint",
            template_id=self.template.id,
            gpu_type_ids=endpoint.gpu_types,
            workers_min=endpoint.workers_min,
            workers_max=endpoint.workers_max,
            idle_timeout_s=endpoint.idle_timeout_s,
            execution_timeout_ms=endpoint.execution_timeout_s * 1000,
            scaler_type=endpoint.scaler_type,
            scaler_value=endpoint.scaler_value,
            flashboot=endpoint.flashboot,
            network_volume_ids=endpoint.network_volume_ids,
            data_center_ids=endpoint.data_center_ids,
            allowed_cuda_versions=endpoint.allowed_cuda_versions,
            opts=child,
        )
        self.endpoint_id = self.endpoint.id
        self.register_outputs({"endpoint_id": self.endpoint_id})
