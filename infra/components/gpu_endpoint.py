"""A RunPod GPU endpoint: a serverless endpoint carrying its container (image, env, the
credential that pulls the image) on GPU pools in order of preference, scaling to zero unless
the stack asks for warm workers, made from a template of the same container (RunPod reads a
template once, at create: a new image or env reaches the workers as a release of the endpoint).

Secret values never sit in the container: its env references RunPod secrets
(`{{ RUNPOD_SECRET_<name> }}`, `runpod_secret`), which RunPod fills in when a worker boots, and
carries a fingerprint of their values, so a new value is a new release that replaces the
workers (RunPod would otherwise give it only to workers that boot later).
"""

import hashlib
from collections.abc import Mapping

import pulumi

from infra.config import GpuEndpointConfig
from infra.runpod.resources import Container, Endpoint, Secret, Template

NETWORK_VOLUME = "/runpod-volume"  # where RunPod mounts an endpoint's network volume
FINGERPRINT = "TANDEM_VALUES_FINGERPRINT"  # of the values its secret references stand for


def runpod_secret(stack: str, key: str, value: pulumi.Input[str], description: str) -> Secret:
    """The stack's RunPod secret `tandem-<stack>-<key>` holding `value`."""
    name = f"tandem-{stack}-{key}"
    return Secret(name, name=name, value=value, description=description)


def _fingerprint(values: list[str]) -> str:
    return hashlib.sha256("\0".join(values).encode()).hexdigest()[:16]


class GpuEndpoint(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        stack: str,
        endpoint: GpuEndpointConfig,
        *,
        image: pulumi.Input[str],
        env: Mapping[str, pulumi.Input[str]],
        secret_env: dict[str, Secret],
        registry_auth_id: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`secret_env`: env variable -> the RunPod secret it reads; `registry_auth_id`: the
        RunPod credential that pulls `image` (the endpoint's own `registryAuthId` setting, for
        a prebuilt image elsewhere, wins)."""
        super().__init__("tandem:infra:GpuEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        plain = {**endpoint.env, **env}
        if endpoint.model:
            plain["MODEL_NAME"] = endpoint.model
        if endpoint.network_volume_ids:  # weights downloaded once, kept for every worker
            plain.setdefault("HF_HOME", f"{NETWORK_VOLUME}/huggingface")
        plain |= {key: secret.reference for key, secret in secret_env.items()}
        values = [secret.value for _, secret in sorted(secret_env.items())]
        fingerprint = pulumi.Output.all(*values).apply(_fingerprint)
        all_env = pulumi.Output.all(plain, fingerprint).apply(
            lambda parts: {**parts[0], FINGERPRINT: parts[1]}
        )
        container = Container(
            image,
            all_env,
            endpoint.container_disk_gb,
            endpoint.registry_auth_id or registry_auth_id,
        )
        self.template = Template(f"tandem-{stack}-{name}-template", container=container, opts=child)
        selection = endpoint.gpu_selection()
        self.endpoint = Endpoint(
            f"tandem-{stack}-{name}-endpoint",
            container=container,
            template_id=self.template.id,
            gpu_pools=selection.pools,
            excluded_gpu_types=selection.excluded_types,
            workers_min=endpoint.workers_min,
            workers_max=endpoint.workers_max,
            idle_timeout_s=endpoint.idle_timeout_s,
            execution_timeout_ms=endpoint.execution_timeout_s * 1000,
            scaler_type=endpoint.scaler_type,
            scaler_value=endpoint.scaler_value,
            flashboot="FLASHBOOT" if endpoint.flashboot else "OFF",
            network_volume_ids=endpoint.network_volume_ids,
            data_center_ids=endpoint.data_center_ids,
            allowed_cuda_versions=endpoint.allowed_cuda_versions,
            opts=child,
        )
        self.endpoint_id = self.endpoint.id
        self.register_outputs({"endpoint_id": self.endpoint_id})
