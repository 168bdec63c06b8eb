"""The request bodies Tandem sends to RunPod's REST API v2, as typed models. `body()` is the JSON
sent: RunPod's field names, unset fields left out, checked against the spec's schema first (a
body RunPod would refuse never leaves this machine). Numbers are coerced to the spec's types:
the Pulumi engine hands every number over as a float."""

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from runpod_api import spec

FlashBoot = Literal["OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"]


class Part(BaseModel):
    """A part of a body: RunPod's camelCase names, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Body(Part):
    schema_name: ClassVar[str]  # the spec's schema of this body

    def body(self) -> dict[str, Any]:
        """The JSON to send, checked against the spec (SpecViolation names what is off)."""
        body = self.model_dump(by_alias=True, exclude_none=True)
        spec.check(self.schema_name, body)
        return body


class Gpu(Part):
    """Serverless GPU pools (`ADA_24`, from the catalog), types of them left out, GPUs a worker."""

    pools: list[str]
    excluded_types: list[str] | None = None
    count: int | None = None
    allowed_cuda_versions: list[str] | None = None


class Workers(Part):
    min: int | None = None
    max: int | None = None
    idle_timeout: int | None = None  # seconds


class Scaling(Part):
    """Scale on queue delay (seconds a job waits) or on requests per worker."""

    type: Literal["QUEUE_DELAY", "REQUEST_COUNT"]
    queue_delay: float | None = None
    request_count: int | None = None


class Container(Part):
    """What a worker runs: image, env (values are strings; `{{ RUNPOD_SECRET_<name> }}` names
    an account secret), container disk in GB and the registry credential that pulls the image."""

    image: str | None = None
    env: dict[str, str] | None = None
    disk: int | None = None
    registry: str | None = None
    args: str | None = None


class EndpointCreate(Container, Body):
    schema_name = "CreateEndpointRequest"
    name: str
    type: Literal["QUEUE", "LOAD_BALANCER"] = "QUEUE"
    template_id: str | None = None
    gpu: Gpu
    workers: Workers | None = None
    scaling: Scaling
    timeout: int | None = None  # ms a job may run
    flashboot: FlashBoot | None = None
    data_center_ids: list[str] | None = None
    network_volumes: list[str] | None = None


class EndpointUpdate(Container, Body):
    """A PATCH: only what it holds changes. A container change is a new release that rolls the
    endpoint's workers."""

    schema_name = "UpdateEndpointRequest"
    name: str | None = None
    template_id: str | None = None
    gpu: Gpu | None = None
    workers: Workers | None = None
    scaling: Scaling | None = None
    timeout: int | None = None
    flashboot: FlashBoot | None = None
    data_center_ids: list[str] | None = None
    network_volumes: list[str] | None = None


class TemplateCreate(Container, Body):
    schema_name = "CreateTemplateRequest"
    name: str
    image: str  # type: ignore[assignment]  # required here
    serverless: bool | None = None


class TemplateUpdate(Container, Body):
    schema_name = "UpdateTemplateRequest"
    name: str | None = None
    serverless: bool | None = None


class RegistryCreate(Body):
    schema_name = "CreateRegistryRequest"
    name: str
    username: str
    password: str


class SecretCreate(Body):
    schema_name = "SecretCreateInput"
    name: str
    value: str
    description: str | None = None


class SecretUpdate(Body):
    schema_name = "SecretUpdateInput"
    value: str | None = None
    description: str | None = None
