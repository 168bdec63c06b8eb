"""Pulumi dynamic providers for RunPod serverless templates, endpoints and container registry
credentials (REST API v1), and account secrets (REST API v2).

Properties carry RunPod's own field names, so state reads like the API. `diff` names the
changes RunPod can apply in place (its update inputs) and the ones that need a replacement;
removing an optional field is a change too. `read` overwrites the state with what RunPod
returns, so `pulumi refresh` and drift checks see out-of-band edits to workers, GPUs, timeouts,
scaler or env, and a resource deleted out of band reads as gone. RunPod never returns
`flashboot` (its drift cannot be seen; `read` keeps the value last applied) and names a
flashboot endpoint `<name> -fb` (read back as `<name>`). A registry credential has no update
route and reads back only its name: any change replaces it. A secret's value is write-only (a
change is sent, never read back); its name is immutable (a new name replaces it). The API's
deployments are one resource of a stack that makes and reads nothing: deleting it removes
what the API made (ApiDeploymentsProvider).

Where and how to call RunPod is the stack's config, read when the engine configures the
provider: the secret `tandem:runpodApiKey` and, optionally, `tandem:runpodApiBase` and
`tandem:runpodApiV2Base`. None is a resource property, so state never holds the key and
rotating it needs no diff: the next refresh, update or destroy uses the new one.
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

from infra.runpod.client import REST_API, REST_API_V2, RunPodNotFound, RunPodRest
from infra.runpod.names import FLASHBOOT_SUFFIX, made_by

API_KEY, API_BASE, API_V2_BASE = (
    "tandem:runpodApiKey",
    "tandem:runpodApiBase",
    "tandem:runpodApiV2Base",
)
TEMPLATE_FIELDS = (
    "name",
    "imageName",
    "env",
    "containerDiskInGb",
    "containerRegistryAuthId",
    "dockerStartCmd",
    "isServerless",
)
TEMPLATE_IN_PLACE = set(TEMPLATE_FIELDS) - {"isServerless"}  # not an update input
ENDPOINT_FIELDS = (
    "name",
    "templateId",
    "computeType",
    "gpuTypeIds",
    "gpuCount",
    "workersMin",
    "workersMax",
    "idleTimeout",
    "executionTimeoutMs",
    "scalerType",
    "scalerValue",
    "flashboot",
    "networkVolumeIds",
    "dataCenterIds",
    "allowedCudaVersions",
)
ENDPOINT_IN_PLACE = set(ENDPOINT_FIELDS) - {"computeType"}
REGISTRY_AUTH_FIELDS = ("name", "username", "password")
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
    applied for the `write_only` fields, which RunPod never returns). A field the program leaves
    unset is RunPod's to fill (e.g. `dataCenterIds`: anywhere) and is not tracked."""
    state = {}
    for key in fields:
        if not _set(props.get(key)):
            continue
        state[key] = live[key] if key in live and key not in write_only else props[key]
    if isinstance(state.get("name"), str):
        state["name"] = state["name"].removesuffix(FLASHBOOT_SUFFIX)
    return {key: value for key, value in state.items() if _set(value)}


class RunPodProvider(ResourceProvider):
    """create/read/diff/update/delete of one kind of RunPod object over RunPodRest."""

    kind: str  # "template", "endpoint", "registry_auth": RunPodRest's `<verb>_<kind>` methods
    fields: tuple[str, ...]
    in_place: set[str]  # the fields RunPod's update accepts; a change to another replaces
    write_only: frozenset[str] = frozenset()  # accepted by RunPod, never returned
    api_key: str | None = None
    api_base: str = REST_API
    api_v2_base: str = REST_API_V2

    def configure(self, req: ConfigureRequest) -> None:
        self.api_key = req.config.get(API_KEY)
        self.api_base = req.config.get(API_BASE) or REST_API
        self.api_v2_base = req.config.get(API_V2_BASE) or REST_API_V2

    def _rest(self) -> RunPodRest:
        if not self.api_key:
            raise ValueError(
                f"no RunPod API key: set the stack's secret {API_KEY} "
                "(pulumi config set --secret runpodApiKey <key>)"
            )
        return RunPodRest(self.api_key, self.api_base, v2_url=self.api_v2_base)

    def _call(self, verb: str, *args: Any) -> Any:
        with self._rest() as runpod:
            return getattr(runpod, f"{verb}_{self.kind}")(*args)

    def create(self, props: dict[str, Any]) -> CreateResult:
        live = self._call("create", _body(props, self.fields))
        return CreateResult(live["id"], _state(live, props, self.fields, self.write_only))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            live = self._call("get", id_)
        except RunPodNotFound:
            return GONE
        return ReadResult(id_, _state(live, props, self.fields, self.write_only))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changes = [
            key
            for key in self.fields
            if (_set(olds.get(key)) or _set(news.get(key))) and olds.get(key) != news.get(key)
        ]
        return DiffResult(
            changes=bool(changes),
            replaces=[key for key in changes if key not in self.in_place],
            delete_before_replace=False,
        )

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Send every in-place field; one removed from the program is sent empty (RunPod's
        update keeps what a body leaves out)."""
        body = {
            key: news[key] if _set(news.get(key)) else _empty_like(olds[key])
            for key in self.fields
            if key in self.in_place and (_set(news.get(key)) or _set(olds.get(key)))
        }
        live = self._call("update", id_, body)
        return UpdateResult(_state(live, news, self.fields, self.write_only))

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        self._call("delete", id_)


def _empty_like(value: Any) -> Any:
    return type(value)() if isinstance(value, str | list | dict) else None


class TemplateProvider(RunPodProvider):
    kind, fields, in_place = "template", TEMPLATE_FIELDS, TEMPLATE_IN_PLACE


class EndpointProvider(RunPodProvider):
    kind, fields, in_place = "endpoint", ENDPOINT_FIELDS, ENDPOINT_IN_PLACE
    write_only = frozenset({"flashboot"})


class RegistryAuthProvider(RunPodProvider):
    kind, fields, in_place = "registry_auth", REGISTRY_AUTH_FIELDS, set()
    write_only = frozenset({"username", "password"})


class SecretProvider(RunPodProvider):
    kind, fields, in_place = "secret", SECRET_FIELDS, {"value", "description"}
    write_only = frozenset({"value"})


class ApiDeploymentsProvider(RunPodProvider):
    """The endpoints and templates the stack's API makes for its deployments, named with its
    `prefix` (infra/runpod/names.py). They are the API's, not the program's: nothing is made
    or read (refresh and drift never see them), but deleting this resource, the stack's
    destroy, removes every one of them, endpoints first."""

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
