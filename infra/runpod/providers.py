"""Pulumi dynamic providers for a RunPod serverless template and endpoint (REST API v1).

Properties carry RunPod's own field names, so state reads like the API. `diff` names the
changes RunPod can apply in place (its update inputs) and the ones that need a replacement;
`read` overwrites the state with what RunPod returns, so `pulumi refresh` and drift checks see
out-of-band edits to workers, GPUs, timeouts, scaler or env, and a resource deleted out of band
reads as gone. RunPod never returns `flashboot`:
its drift cannot be seen, and `read` keeps the value last applied.

The API key is read at run time: the `apiKey` property (a secret, from the stack's config) or
the RUNPOD_API_KEY environment variable. It is never part of a provider object, whose code is
serialised into the state.
"""

import os
from typing import Any

from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from infra.runpod.client import REST_API, RunPodNotFound, RunPodRest

# Inputs that are ours, not RunPod's: where and how to call the API.
CONNECTION = ("apiKey", "apiBase")
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
    "networkVolumeId",
)
ENDPOINT_IN_PLACE = set(ENDPOINT_FIELDS) - {"computeType"}
WRITE_ONLY = {"flashboot"}  # accepted by RunPod, never returned
# What `read` answers for a resource deleted out of band: an empty id, which Pulumi's refresh
# reports as a deletion (and drift detection as "deleted out of band").
GONE = ReadResult("", {})


def client_for(props: dict[str, Any]) -> RunPodRest:
    api_key = props.get("apiKey") or os.environ.get("RUNPOD_API_KEY")
    if not api_key:
        raise ValueError(
            "no RunPod API key: set the stack's secret `runpod:apiKey` or RUNPOD_API_KEY"
        )
    return RunPodRest(api_key, props.get("apiBase") or REST_API)


def _body(props: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {key: props[key] for key in fields if props.get(key) is not None}


def _state(live: dict[str, Any], props: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The state to keep: RunPod's live values for our fields (the last applied value where
    RunPod returns none), plus the connection inputs."""
    state = {key: props[key] for key in CONNECTION if key in props}
    for key in fields:
        if key in live and key not in WRITE_ONLY:
            state[key] = live[key]
        elif props.get(key) is not None:
            state[key] = props[key]
    return state


def _diff(
    olds: dict[str, Any], news: dict[str, Any], fields: tuple[str, ...], in_place: set[str]
) -> DiffResult:
    changes = [key for key in fields if news.get(key) is not None and olds.get(key) != news[key]]
    return DiffResult(
        changes=bool(changes) or olds.get("apiBase") != news.get("apiBase"),
        replaces=[key for key in changes if key not in in_place],
        delete_before_replace=False,
    )


class RunPodProvider(ResourceProvider):
    """create/read/diff/update/delete of one kind of RunPod object over RunPodRest."""

    kind: str  # "template" or "endpoint": RunPodRest's `<verb>_<kind>` methods
    fields: tuple[str, ...]
    in_place: set[str]  # the fields RunPod's update accepts; a change to another replaces

    def _call(self, props: dict[str, Any], verb: str, *args: Any) -> Any:
        with client_for(props) as runpod:
            return getattr(runpod, f"{verb}_{self.kind}")(*args)

    def create(self, props: dict[str, Any]) -> CreateResult:
        live = self._call(props, "create", _body(props, self.fields))
        return CreateResult(live["id"], _state(live, props, self.fields))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            live = self._call(props, "get", id_)
        except RunPodNotFound:
            return GONE
        return ReadResult(id_, _state(live, props, self.fields))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return _diff(olds, news, self.fields, self.in_place)

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        body = {k: v for k, v in _body(news, self.fields).items() if k in self.in_place}
        live = self._call(news, "update", id_, body)
        return UpdateResult(_state(live, news, self.fields))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self._call(props, "delete", id_)


class TemplateProvider(RunPodProvider):
    kind, fields, in_place = "template", TEMPLATE_FIELDS, TEMPLATE_IN_PLACE


class EndpointProvider(RunPodProvider):
    kind, fields, in_place = "endpoint", ENDPOINT_FIELDS, ENDPOINT_IN_PLACE
