"""RunPod serverless templates, endpoints, container registry credentials and account secrets as
Pulumi resources, and the stack's API's deployments as one (see providers.py: the connection to
RunPod is the stack's config, not a property)."""

from typing import Literal

import pulumi
from pulumi.dynamic import Resource

from infra.runpod.names import stack_prefix
from infra.runpod.providers import (
    ApiDeploymentsProvider,
    EndpointProvider,
    RegistryAuthProvider,
    SecretProvider,
    TemplateProvider,
)

ScalerType = Literal["QUEUE_DELAY", "REQUEST_COUNT"]


class Template(Resource):
    """A serverless template: the worker image, its env (values kept secret in the state) and
    container disk."""

    imageName: pulumi.Output[str]
    env: pulumi.Output[dict]

    def __init__(
        self,
        resource_name: str,
        *,
        image: pulumi.Input[str],
        env: pulumi.Input[dict],
        container_disk_gb: int = 20,
        registry_auth_id: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "name": resource_name,
            "imageName": image,
            "env": env,
            "containerDiskInGb": container_disk_gb,
            "containerRegistryAuthId": registry_auth_id,
            "isServerless": True,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["env"])
        super().__init__(
            TemplateProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret)
        )


class Endpoint(Resource):
    """A serverless endpoint on a template: GPU types in order of preference, workers min/max,
    idle and execution timeouts, scaler, flashboot, optional network volumes, and where
    workers may run (data centres, CUDA versions; unset: RunPod's choice)."""

    templateId: pulumi.Output[str]
    gpuTypeIds: pulumi.Output[list]
    workersMin: pulumi.Output[int]
    workersMax: pulumi.Output[int]

    def __init__(
        self,
        resource_name: str,
        *,
        template_id: pulumi.Input[str],
        gpu_type_ids: list[str],
        workers_min: int = 0,
        workers_max: int = 3,
        idle_timeout_s: int = 5,
        execution_timeout_ms: int = 600_000,
        scaler_type: ScalerType = "QUEUE_DELAY",
        scaler_value: int = 4,
        flashboot: bool = True,
        gpu_count: int = 1,
        network_volume_ids: list[str] | None = None,
        data_center_ids: list[str] | None = None,
        allowed_cuda_versions: list[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "name": resource_name,
            "templateId": template_id,
            "computeType": "GPU",
            "gpuTypeIds": gpu_type_ids,
            "gpuCount": gpu_count,
            "workersMin": workers_min,
            "workersMax": workers_max,
            "idleTimeout": idle_timeout_s,
            "executionTimeoutMs": execution_timeout_ms,
            "scalerType": scaler_type,
            "scalerValue": scaler_value,
            "flashboot": flashboot,
            "networkVolumeIds": network_volume_ids,
            "dataCenterIds": data_center_ids,
            "allowedCudaVersions": allowed_cuda_versions,
        }
        super().__init__(EndpointProvider(), resource_name, props, opts)


class RegistryAuth(Resource):
    """A container registry credential that templates pull private images with. RunPod keeps
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
    """A RunPod account secret: templates reference it in their env as `{{ RUNPOD_SECRET_<name> }}`
    (`reference`), which RunPod replaces with the value when a worker boots, so the value never
    sits in a template. A new value reaches workers that boot after it is set."""

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
