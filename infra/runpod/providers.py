"""Pulumi dynamic providers for RunPod serverless templates, endpoints, registry credentials and
account secrets, over RunPod's REST API v2 (runpod_api.client).

Properties carry RunPod's own v2 field names, so state reads like the API. An endpoint carries
its container (image, env, disk, registry) itself: RunPod resolves a `templateId` once, at
create, so a new image or env reaches its workers only through a PATCH of the endpoint (a
release that rolls them). `diff` names the changes RunPod applies in place and the ones that
need a replacement; removing an optional field is a change too. `read` overwrites the state with
what RunPod returns, so `pulumi refresh` and drift checks see out-of-band edits to the
container, workers, GPUs, scaling, timeout or flashboot, and a resource deleted out of band reads
as gone. A template bound to an endpoint goes when the endpoint is deleted. A registry credential
has no update and reads back only its name: any change replaces it. A secret's value is
write-only; its name is immutable.

State written by the release that spoke REST API v1 (`imageName`, `gpuTypeIds`, `workersMin`,
...) is read as its v2 equivalent (`upgraded`), so such a stack upgrades in place: updates,
never replacements.

Where and how to call RunPod is the stack's config, read when the engine configures the
provider: the secret `tandem:runpodApiKey` and, optionally, `tandem:runpodApiBase` (RunPod's
host). Neither is a resource property, so state never holds the key and rotating it needs no
diff: the next refresh, update or destroy uses the new one.
"""

from typing import Any

from pulumi.dynamic import (
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from runpod_api import catalog
from runpod_api.client import REST_API, RunPodNotFound, RunPodRest
from runpod_api.models import (
    EndpointCreate,
    EndpointUpdate,
    RegistryCreate,
    SecretCreate,
    SecretUpdate,
    TemplateCreate,
    TemplateUpdate,
)
from runpod_api.names import made_by

API_KEY, API_BASE = "tandem:runpodApiKey", "tandem:runpodApiBase"
CONTAINER_FIELDS = ("image", "env", "disk", "registry")
TEMPLATE_FIELDS = ("name", *CONTAINER_FIELDS, "serverless")
ENDPOINT_FIELDS = (
    "name",
    "type",
    "templateId",
    *CONTAINER_FIELDS,
    "gpu",
    "workers",
    "scaling",
    "timeout",
    "flashboot",
    "networkVolumes",
    "dataCenterIds",
)
NESTED = ("gpu", "workers", "scaling")  # objects whose unset members are RunPod's to fill
REGISTRY_FIELDS = ("name", "username", "password")
SECRET_FIELDS = ("name", "value", "description")
EMPTY: tuple[Any, ...] = (None, "", [], {})  # an optional field that is not set
# What `read` answers for a resource deleted out of band: an empty id, which Pulumi's refresh
# reports as a deletion (and drift detection as "deleted out of band").
GONE = ReadResult("", {})


def _set(value: Any) -> bool:
    return not any(value == empty and type(value) is type(empty) for empty in EMPTY)


def _body(props: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {key: props[key] for key in fields if _set(props.get(key))}


def _state(
    live: dict[str, Any],
    props: dict[str, Any],
    fields: tuple[str, ...],
    write_only: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The state to keep: for each field the program sets, RunPod's live value (the value last
    applied for the `write_only` fields, which RunPod never returns; of a NESTED object, the
    members the program sets). A field the program leaves unset is RunPod's to fill (e.g.
    `dataCenterIds`: anywhere) and is not tracked."""
    state = {}
    for key in fields:
        if not _set(props.get(key)):
            continue
        value = live[key] if key in live and key not in write_only else props[key]
        if key in NESTED and isinstance(value, dict):
            value = {member: value.get(member) for member in props[key]}
        state[key] = value
    return {key: value for key, value in state.items() if _set(value)}


def _empty_like(value: Any) -> Any:
    return type(value)() if isinstance(value, str | list | dict) else None


# -- state of the REST API v1 release ------------------------------------------------------
_V1_TEMPLATE = {
    "imageName": "image",
    "containerDiskInGb": "disk",
    "containerRegistryAuthId": "registry",
    "isServerless": "serverless",
}


def upgraded(props: dict[str, Any]) -> dict[str, Any]:
    """Properties in v2 terms: a template's or an endpoint's v1 state translated (GPU types to
    their pools through the catalog snapshot, flashboot to its v2 mode); v2 ones as they are."""
    if "imageName" in props:
        return {_V1_TEMPLATE.get(key, key): value for key, value in props.items()}
    if "gpuTypeIds" not in props:
        return props
    selection = catalog.select(props["gpuTypeIds"], catalog.snapshot()["gpus"])
    gpu: dict[str, Any] = {"pools": selection.pools, "count": props.get("gpuCount", 1)}
    if selection.excluded_types:
        gpu["excludedTypes"] = selection.excluded_types
    if props.get("allowedCudaVersions"):
        gpu["allowedCudaVersions"] = props["allowedCudaVersions"]
    scaler = (
        "queueDelay" if props.get("scalerType", "QUEUE_DELAY") == "QUEUE_DELAY" else "requestCount"
    )
    v2 = {
        "name": props.get("name"),
        "type": "QUEUE",
        "templateId": props.get("templateId"),
        "gpu": gpu,
        "workers": {
            "min": props.get("workersMin", 0),
            "max": props.get("workersMax", 3),
            "idleTimeout": props.get("idleTimeout", 5),
        },
        "scaling": {
            "type": props.get("scalerType", "QUEUE_DELAY"),
            scaler: props.get("scalerValue", 4),
        },
        "timeout": props.get("executionTimeoutMs"),
        "flashboot": "FLASHBOOT" if props.get("flashboot") else "OFF",
        "networkVolumes": props.get("networkVolumeIds"),
        "dataCenterIds": props.get("dataCenterIds"),
    }
    return {key: value for key, value in v2.items() if _set(value)} | (
        {"__provider": props["__provider"]} if "__provider" in props else {}
    )


class RunPodProvider(ResourceProvider):
    """create/read/diff/update/delete of one kind of RunPod object over RunPodRest."""

    kind: str  # "template", "endpoint", "registry", "secret": RunPodRest's `<verb>_<kind>`
    fields: tuple[str, ...]
    in_place: set[str]  # the fields RunPod's update accepts; a change to another replaces
    write_only: frozenset[str] = frozenset()  # accepted by RunPod, never returned
    create_model: Any
    update_model: Any = None
    api_key: str | None = None
    api_base: str = REST_API

    def configure(self, req: ConfigureRequest) -> None:
        self.api_key = req.config.get(API_KEY)
        self.api_base = req.config.get(API_BASE) or REST_API

    def _rest(self) -> RunPodRest:
        if not self.api_key:
            raise ValueError(
                f"no RunPod API key: set the stack's secret {API_KEY} "
                "(pulumi config set --secret runpodApiKey <key>)"
            )
        return RunPodRest(self.api_key, self.api_base)

    def _call(self, verb: str, *args: Any) -> Any:
        with self._rest() as runpod:
            return getattr(runpod, f"{verb}_{self.kind}")(*args)

    def create(self, props: dict[str, Any]) -> CreateResult:
        body = self.create_model.model_validate(_body(props, self.fields))
        live = self._call("create", body)
        return CreateResult(live["id"], _state(live, props, self.fields, self.write_only))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        props = upgraded(props)
        try:
            live = self._call("get", id_)
        except RunPodNotFound:
            return GONE
        return ReadResult(id_, _state(live, props, self.fields, self.write_only))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        olds = upgraded(olds)
        changes = _changes(self.fields, olds, news)
        return DiffResult(
            changes=bool(changes),
            replaces=[key for key in changes if key not in self.in_place],
            delete_before_replace=False,
        )

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Send the fields that changed; one removed from the program is sent empty (a PATCH
        keeps what a body leaves out)."""
        olds = upgraded(olds)
        body = {
            key: news[key] if _set(news.get(key)) else _empty_like(olds[key])
            for key in _changes(self.fields, olds, news)
        }
        live = self._call("update", id_, self.update_model.model_validate(body))
        return UpdateResult(_state(live, news, self.fields, self.write_only))

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        self._call("delete", id_)


def _changes(fields: tuple[str, ...], olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    return [
        key
        for key in fields
        if (_set(olds.get(key)) or _set(news.get(key))) and olds.get(key) != news.get(key)
    ]


class TemplateProvider(RunPodProvider):
    """A serverless template: the container an endpoint is made from. It is bound to that
    endpoint, and deleted with it (a delete of one already gone succeeds)."""

    kind, fields, in_place = "template", TEMPLATE_FIELDS, set(TEMPLATE_FIELDS)
    create_model, update_model = TemplateCreate, TemplateUpdate


class EndpointProvider(RunPodProvider):
    kind, fields, in_place = "endpoint", ENDPOINT_FIELDS, set(ENDPOINT_FIELDS) - {"type"}
    write_only = frozenset({"templateId"})  # resolved at create; never returned
    create_model, update_model = EndpointCreate, EndpointUpdate


class RegistryAuthProvider(RunPodProvider):
    """A registry credential (the v1 release's class name, which its state refers to)."""

    kind, fields, in_place = "registry", REGISTRY_FIELDS, set()
    write_only = frozenset({"username", "password"})
    create_model = RegistryCreate


class SecretProvider(RunPodProvider):
    kind, fields, in_place = "secret", SECRET_FIELDS, {"value", "description"}
    write_only = frozenset({"value"})
    create_model, update_model = SecretCreate, SecretUpdate


class ApiDeploymentsProvider(RunPodProvider):
    """The endpoints and templates the stack's API makes for its deployments, named with its
    `prefix` (runpod_api/names.py). They are the API's, not the program's: nothing is made
    or read (refresh and drift never see them), but deleting this resource, the stack's
    destroy, removes every one of them, endpoints (and the templates bound to them) first."""

    fields, in_place = ("prefix",), set()  # a new prefix replaces it

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["prefix"], {"prefix": props["prefix"]})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self._rest() as runpod:
            for endpoint in runpod.list_endpoints():
                if made_by(props["prefix"], endpoint["name"]):
                    runpod.delete_endpoint(endpoint["id"])
            for template in runpod.list_templates():
                if made_by(props["prefix"], template["name"]):
                    runpod.delete_template(template["id"])
