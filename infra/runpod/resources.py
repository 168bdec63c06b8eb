"""RunPod serverless templates, endpoints, container registry credentials and account secrets as
Pulumi resources, and the stack's API's deployments as one (see providers.py: the connection to
RunPod is the stack's config, not a property)."""

from typing import Any, Literal

import pulumi
from pulumi.dynamic import Resource

from infra.runpod.providers import (
    ApiDeploymentsProvider,
    EndpointProvider,
    RegistryAuthProvider,
    SecretProvider,
    TemplateProvider,
)
from runpod_api.models import FlashBoot
from runpod_api.names import stack_prefix

ScalerType = Literal["QUEUE_DELAY", "REQUEST_COUNT"]


class Template(Resource):
    """A serverless template: the worker image, its env (values kept secret in the state),
    container disk and the registry credential that pulls the image. An endpoint made from it
    takes its container once, at create, and deletes it when it is deleted."""

    image: pulumi.Output[str]
    env: pulumi.Output[dict]

    def __init__(
        self,
        resource_name: str,
        *,
        container: "Container",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"name": resource_name, **container.props(), "serverless": True}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["env"])
        super().__init__(
            TemplateProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret)
        )


class Container:
    """What an endpoint's workers run: image, env, container disk (GB), registry credential."""

    def __init__(
        self,
        image: pulumi.Input[str],
        env: pulumi.Input[dict],
        disk_gb: int = 20,
        registry: pulumi.Input[str] | None = None,
    ) -> None:
        self.image, self.env, self.disk_gb, self.registry = image, env, disk_gb, registry

    def props(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "env": self.env,
            "disk": self.disk_gb,
            "registry": self.registry,
        }


class Endpoint(Resource):
    """A serverless endpoint (queue-based) that carries its container itself, so that a new
    image or env is a release that rolls its workers: GPU pools in order of preference (and the
    types of them left out), workers min/max and idle timeout, scaling, execution timeout,
    flashboot, optional network volumes and data centres (unset: RunPod's choice). `template_id`
    is the template it was made from (kept, never sent again)."""

    gpu: pulumi.Output[dict]
    workers: pulumi.Output[dict]
    env: pulumi.Output[dict]

    def __init__(
        self,
        resource_name: str,
        *,
        container: Container,
        template_id: pulumi.Input[str] | None,
        gpu_pools: list[str],
        excluded_gpu_types: list[str] | None = None,
        workers_min: int = 0,
        workers_max: int = 3,
        idle_timeout_s: int = 5,
        execution_timeout_ms: int = 600_000,
        scaler_type: ScalerType = "QUEUE_DELAY",
        scaler_value: float = 4,
        flashboot: FlashBoot = "FLASHBOOT",
        gpu_count: int = 1,
        network_volume_ids: list[str] | None = None,
        data_center_ids: list[str] | None = None,
        allowed_cuda_versions: list[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        gpu: dict[str, Any] = {"pools": gpu_pools, "count": gpu_count}
        if excluded_gpu_types:
            gpu["excludedTypes"] = excluded_gpu_types
        if allowed_cuda_versions:
            gpu["allowedCudaVersions"] = allowed_cuda_versions
        scaler = "queueDelay" if scaler_type == "QUEUE_DELAY" else "requestCount"
        props = {
            "name": resource_name,
            "type": "QUEUE",
            "templateId": template_id,
            **container.props(),
            "gpu": gpu,
            "workers": {"min": workers_min, "max": workers_max, "idleTimeout": idle_timeout_s},
            "scaling": {"type": scaler_type, scaler: scaler_value},
            "timeout": execution_timeout_ms,
            "flashboot": flashboot,
            "networkVolumes": network_volume_ids,
            "dataCenterIds": data_center_ids,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["env"])
        super().__init__(
            EndpointProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret)
        )


class RegistryAuth(Resource):
    """A container registry credential that endpoints pull private images with. RunPod keeps
    the username and password write-only and names unique: a new credential needs a new name."""

    name: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        username: pulumi.Input[str],
        password: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"name": name, "username": username, "password": pulumi.Output.secret(password)}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        super().__init__(
            RegistryAuthProvider(),
            resource_name,
            props,
            pulumi.ResourceOptions.merge(opts, secret),
        )


class Secret(Resource):
    """A RunPod account secret: endpoints reference it in their env as `{{ RUNPOD_SECRET_<name> }}`
    (`reference`), which RunPod replaces with the value when a worker boots, so the value never
    sits in an endpoint. A new value reaches workers that boot after it is set."""

    name: pulumi.Output[str]
    value: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: str,
        value: pulumi.Input[str],
        description: str = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"name": name, "value": pulumi.Output.secret(value), "description": description}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["value"])
        super().__init__(
            SecretProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret)
        )
        self.reference = f"{{{{ RUNPOD_SECRET_{name} }}}}"


class ApiDeployments(Resource):
    """What the stack's API makes at RunPod for its deployments (`/v1/deployments`), named
    with `prefix`: left to the API while the stack lives, removed with the stack. Give the
    prefix to the API (DEPLOYMENT_NAME_PREFIX): depending on it, the API goes first."""

    prefix: pulumi.Output[str]

    def __init__(
        self, resource_name: str, *, stack: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {"prefix": stack_prefix(stack)}
        super().__init__(ApiDeploymentsProvider(), resource_name, props, opts)
