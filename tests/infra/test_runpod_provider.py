"""The RunPod dynamic providers, method by method, against the emulator's control plane, which
checks every request and response against RunPod's published spec. (The engine tests run them
under the real Pulumi engine: tests/engine.)"""

import uuid

import httpx
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config

from infra.runpod.client import RunPodApiError, RunPodRest
from infra.runpod.names import deployment_name, stack_prefix
from infra.runpod.providers import (
    API_BASE,
    API_KEY,
    API_V2_BASE,
    ApiDeploymentsProvider,
    EndpointProvider,
    RegistryAuthProvider,
    SecretProvider,
    TemplateProvider,
)
from tests.runpod_control import CONTROLLED_IMAGE, ControlPlane

KEY = "rp-test-key"
HMAC = "s3cret-hmac-value"


@pytest.fixture(scope="module")
def runpod():
    with ControlPlane(KEY) as control:
        yield control


@pytest.fixture(autouse=True)
def no_violations(runpod):
    yield
    assert runpod.violations == []


def configured(provider_class, runpod: ControlPlane, key: str | None = KEY):
    """A provider as the engine configures it: with the stack's config."""
    provider = provider_class()
    config = {API_BASE: runpod.url, API_V2_BASE: runpod.v2_url} | ({API_KEY: key} if key else {})
    provider.configure(ConfigureRequest(Config(config, "tandem")))
    return provider


def template_props(**overrides) -> dict:
    return {
        "name": "tandem-dev-llm",
        "imageName": CONTROLLED_IMAGE,
        "env": {"MODEL_NAME": "Qwen/Qwen2.5-1.5B-Instruct", "EMBEDDING_HMAC_SECRET": HMAC},
        "containerDiskInGb": 30.0,  # as the engine hands every number: a float
        "isServerless": True,
    } | overrides


def endpoint_props(template_id: str, **overrides) -> dict:
    return {
        "name": "tandem-dev-llm",
        "templateId": template_id,
        "computeType": "GPU",
        "gpuTypeIds": ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A5000"],
        "gpuCount": 1.0,
        "workersMin": 0.0,
        "workersMax": 2.0,
        "idleTimeout": 5.0,
        "executionTimeoutMs": 600_000.0,
        "scalerType": "QUEUE_DELAY",
        "scalerValue": 4.0,
        "flashboot": True,
    } | overrides


def new_endpoint(runpod: ControlPlane, **overrides):
    """An endpoint created on a new template: its provider, its properties and the result."""
    template = configured(TemplateProvider, runpod).create(template_props())
    provider = configured(EndpointProvider, runpod)
    props = endpoint_props(template.id, **overrides)
    return provider, props, provider.create(props)


def test_template_create_read_update_delete(runpod):
    provider = configured(TemplateProvider, runpod)
    props = template_props()
    created = provider.create(props)
    live = runpod.rest("GET", f"/templates/{created.id}").json()
    assert live["imageName"] == CONTROLLED_IMAGE and live["isServerless"] is True
    assert live["containerDiskInGb"] == 30 and isinstance(live["containerDiskInGb"], int)
    assert created.outs["env"] == props["env"]

    new_env = {**props["env"], "MAX_CONCURRENCY": "16"}
    diff = provider.diff(created.id, created.outs, {**props, "env": new_env})
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, created.outs, {**props, "env": new_env})
    assert updated.outs["env"]["MAX_CONCURRENCY"] == "16"

    assert provider.read(created.id, updated.outs).outs["env"] == new_env
    provider.delete(created.id, updated.outs)
    assert runpod.rest("GET", f"/templates/{created.id}").status_code == 404
    provider.delete(created.id, updated.outs)  # already gone (RunPod answers 400): not an error


def test_endpoint_lifecycle_and_what_replaces(runpod):
    provider, props, created = new_endpoint(runpod)
    live = runpod.rest("GET", f"/endpoints/{created.id}").json()
    assert live["gpuTypeIds"] == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A5000"]  # in order
    assert (live["workersMin"], live["workersMax"]) == (0, 2)
    assert live["name"] == "tandem-dev-llm -fb"  # RunPod's flashboot name...
    assert created.outs["name"] == "tandem-dev-llm"  # ...is not a change
    assert not provider.diff(created.id, created.outs, props).changes

    in_place = provider.diff(created.id, created.outs, {**props, "workersMax": 5.0})
    assert in_place.changes and in_place.replaces == []
    replace = provider.diff(created.id, created.outs, {**props, "computeType": "CPU"})
    assert replace.replaces == ["computeType"]

    updated = provider.update(created.id, created.outs, {**props, "workersMax": 5.0})
    assert runpod.rest("GET", f"/endpoints/{created.id}").json()["workersMax"] == 5
    assert updated.outs["workersMax"] == 5
    provider.delete(created.id, updated.outs)  # scaled to 0 first, as RunPod requires
    assert runpod.rest("GET", f"/endpoints/{created.id}").status_code == 404
    provider.delete(created.id, updated.outs)  # already gone: not an error


def test_removing_an_optional_field_is_a_change_that_clears_it(runpod):
    provider, props, created = new_endpoint(runpod, networkVolumeIds=["vol-1", "vol-2"])
    assert created.outs["networkVolumeIds"] == ["vol-1", "vol-2"]
    without = {k: v for k, v in props.items() if k != "networkVolumeIds"}
    diff = provider.diff(created.id, created.outs, without)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, created.outs, without)
    assert "networkVolumeIds" not in updated.outs
    assert not runpod.rest("GET", f"/endpoints/{created.id}").json().get("networkVolumeIds")
    assert not provider.diff(created.id, updated.outs, without).changes
    provider.delete(created.id, updated.outs)


def test_what_runpod_fills_in_is_not_a_change_and_what_we_set_is_tracked(runpod):
    provider, props, created = new_endpoint(runpod)
    live = runpod.rest("GET", f"/endpoints/{created.id}").json()
    assert len(live["dataCenterIds"]) > 1  # RunPod's default: anywhere
    assert "dataCenterIds" not in created.outs
    assert not provider.diff(
        created.id, provider.read(created.id, created.outs).outs, props
    ).changes

    placed = {**props, "dataCenterIds": ["EU-RO-1", "EU-SE-1"], "allowedCudaVersions": ["12.8"]}
    assert provider.diff(created.id, created.outs, placed).replaces == []
    updated = provider.update(created.id, created.outs, placed)
    assert updated.outs["dataCenterIds"] == ["EU-RO-1", "EU-SE-1"]
    assert updated.outs["allowedCudaVersions"] == ["12.8"]
    runpod.rest("PATCH", f"/endpoints/{created.id}", json={"dataCenterIds": ["US-TX-3"]})
    assert provider.read(created.id, updated.outs).outs["dataCenterIds"] == ["US-TX-3"]  # drift
    provider.delete(created.id, updated.outs)


def test_read_shows_out_of_band_changes_as_drift(runpod):
    provider, props, created = new_endpoint(runpod)
    runpod.rest(
        "PATCH",
        f"/endpoints/{created.id}",
        json={"workersMax": 3, "gpuTypeIds": ["NVIDIA H100 80GB HBM3"]},
    )
    state = provider.read(created.id, created.outs).outs
    assert state["workersMax"] == 3
    assert state["gpuTypeIds"] == ["NVIDIA H100 80GB HBM3"]
    assert state["flashboot"] is True  # RunPod never returns it: the last applied value stays
    assert provider.diff(created.id, state, props).changes  # the next `up` puts it back

    provider.delete(created.id, state)
    assert provider.read(created.id, state).id == ""  # deleted out of band: gone


def test_without_a_key_the_error_names_the_stack_setting(runpod):
    provider = configured(TemplateProvider, runpod, key=None)
    with pytest.raises(ValueError, match="tandem:runpodApiKey"):
        provider.create(template_props())


def test_a_wrong_key_says_what_runpod_answered_without_the_key(runpod):
    provider = configured(TemplateProvider, runpod, key="rp-wrong-key-123")
    with pytest.raises(RunPodApiError) as error:
        provider.create(template_props())
    assert "401" in str(error.value)
    assert "rp-wrong-key-123" not in str(error.value)


def test_runpod_error_bodies_never_carry_secrets_out():
    """RunPod's error bodies can echo the input: the key and env values are masked."""

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": f"bad input: {request.content.decode()}"})

    client = RunPodRest(KEY, "https://rest.runpod.io/v1", transport=httpx.MockTransport(echo))
    with pytest.raises(RunPodApiError) as error:
        client.create_template({"name": "t", "imageName": "i", "env": {"HMAC": HMAC}})
    assert HMAC not in str(error.value) and "[secret]" in str(error.value)
    with pytest.raises(RunPodApiError) as error:
        client.create_registry_auth({"name": "r", "username": "u", "password": "pw-123456"})
    assert "pw-123456" not in str(error.value) and "[secret]" in str(error.value)
    with pytest.raises(RunPodApiError) as error:
        client.create_secret({"name": "s", "value": "value-7890"})
    assert "value-7890" not in str(error.value) and "[secret]" in str(error.value)


def test_rate_limits_and_outages_are_retried_except_for_creates():
    answers: list[int] = []
    created: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0) if answers else 200
        if status == 200 and request.method == "POST":
            created.append("t")
        return httpx.Response(status, json={"id": "t1", "name": "t", "imageName": "img"})

    client = RunPodRest(KEY, "https://rest.runpod.io/v1", httpx.MockTransport(flaky), 0)
    answers[:] = [429, 503]
    assert client.get_template("t1")["name"] == "t"
    answers[:] = [503]
    with pytest.raises(RunPodApiError, match="503 to POST /templates"):
        client.create_template({"name": "t2", "imageName": "img"})
    assert created == []  # no second template behind the caller's back
    answers[:] = [500] * 4
    with pytest.raises(RunPodApiError, match="500 to GET"):
        client.get_template("t1")


def test_a_request_off_the_spec_is_caught(runpod):
    client = RunPodRest(KEY, runpod.url)
    with pytest.raises(RunPodApiError, match="400"):
        client.create_endpoint({"templateId": "t1", "idleTimeout": 99_999})  # max is 3600
    assert runpod.violations
    runpod.violations.clear()
    client.close()


def test_a_registry_credential_is_made_read_back_by_name_replaced_on_change_and_deleted(runpod):
    provider = configured(RegistryAuthProvider, runpod)
    props = {"name": "tandem-dev-ar-1", "username": "_json_key_base64", "password": "a2V5LTE="}
    created = provider.create(props)
    assert runpod.rest("GET", f"/containerregistryauth/{created.id}").json() == {
        "id": created.id,
        "name": "tandem-dev-ar-1",
    }  # RunPod never returns the username or password: the state keeps what was applied
    assert provider.read(created.id, created.outs).outs == props
    rotated = {**props, "name": "tandem-dev-ar-2", "password": "a2V5LTI="}
    diff = provider.diff(created.id, created.outs, rotated)
    assert diff.changes and sorted(diff.replaces) == ["name", "password"]  # no update route
    template = configured(TemplateProvider, runpod).create(
        template_props(containerRegistryAuthId=created.id)
    )
    assert template.outs["containerRegistryAuthId"] == created.id
    configured(TemplateProvider, runpod).delete(template.id, template.outs)
    provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id == ""  # gone
    provider.delete(created.id, created.outs)  # already gone: not an error


def test_a_registry_credential_name_is_unique(runpod):
    provider = configured(RegistryAuthProvider, runpod)
    props = {
        "name": "tandem-dev-dup",
        "username": "_json_key_base64",
        "password": "c2VjcmV0LWtleQ==",
    }
    created = provider.create(props)
    with pytest.raises(RunPodApiError, match=r"400.*'tandem-dev-dup' exists"):  # names are unique
        provider.create(props)
    provider.delete(created.id, created.outs)


def test_a_template_naming_an_unknown_registry_credential_is_refused(runpod):
    with pytest.raises(RunPodApiError, match="containerRegistryAuthId"):
        configured(TemplateProvider, runpod).create(template_props(containerRegistryAuthId="nope"))


def test_a_secret_is_made_rotated_in_place_read_without_its_value_and_deleted(runpod):
    provider = configured(SecretProvider, runpod)
    props = {"name": "tandem-dev-hmac", "value": "first-value", "description": "HMAC"}
    created = provider.create(props)
    live = runpod.rest("GET", f"{runpod.v2_url}/account/secrets/{created.id}").json()
    assert live["name"] == "tandem-dev-hmac" and "value" not in live
    assert provider.read(created.id, created.outs).outs == props  # the value last applied
    rotated = {**props, "value": "second-value"}
    diff = provider.diff(created.id, created.outs, rotated)
    assert diff.changes and diff.replaces == []  # rotated in place
    updated = provider.update(created.id, created.outs, rotated)
    assert updated.outs["value"] == "second-value"
    assert runpod.emulator.control.secrets[created.id]["value"] == "second-value"
    assert provider.diff(created.id, updated.outs, {**rotated, "name": "other"}).replaces == [
        "name"
    ]  # immutable
    provider.delete(created.id, updated.outs)
    assert provider.read(created.id, updated.outs).id == ""  # gone
    provider.delete(created.id, updated.outs)  # already gone: not an error


@pytest.mark.parametrize(
    ("name", "status", "words"),
    [
        ("tandem-dev-taken", 409, "exists"),
        ("runpod-mine", 422, "reserved"),
        ("9-starts-with-a-digit", 400, "invalid request"),  # off the spec's name pattern
    ],
)
def test_a_secret_runpod_refuses_is_reported_with_its_reason(runpod, name, status, words):
    provider = configured(SecretProvider, runpod)
    taken = provider.create({"name": "tandem-dev-taken", "value": "v"})
    try:
        with pytest.raises(RunPodApiError) as refused:
            provider.create({"name": name, "value": "refused-value"})
        assert refused.value.status == status and words in str(refused.value)
        assert "refused-value" not in str(refused.value)
    finally:
        provider.delete(taken.id, taken.outs)
        runpod.check.violations.clear()  # the off-spec request was made on purpose


def test_the_apis_deployments_go_with_their_stack_and_no_others(runpod):
    """ApiDeployments makes and reads nothing at RunPod; deleting it (the stack's destroy)
    removes the endpoints and templates its API made, a flashboot one and one with workers
    included, and leaves the program's own and other stacks' deployments."""
    provider = configured(ApiDeploymentsProvider, runpod)
    prefix = stack_prefix("pr-1")
    before = (runpod.rest("GET", "/endpoints").json(), runpod.rest("GET", "/templates").json())
    created = provider.create({"prefix": prefix})
    assert (created.id, created.outs) == (prefix, {"prefix": prefix})
    assert provider.read(created.id, created.outs).outs == {"prefix": prefix}
    assert not provider.diff(created.id, created.outs, {"prefix": prefix}).changes
    renamed = provider.diff(created.id, created.outs, {"prefix": stack_prefix("pr-2")})
    assert renamed.replaces == ["prefix"]
    assert (runpod.rest("GET", "/endpoints").json(), runpod.rest("GET", "/templates").json()) == (
        before
    )

    def made(name: str, **endpoint) -> str:
        template = configured(TemplateProvider, runpod).create(template_props(name=name))
        props = endpoint_props(template.id, name=name) | endpoint
        return configured(EndpointProvider, runpod).create(props).id

    ours = {
        made(deployment_name(prefix, uuid.uuid4())),  # flashboot: named `<name> -fb`
        made(deployment_name(prefix, uuid.uuid4()), flashboot=False, workersMin=1.0),
    }
    others = {
        made(deployment_name(stack_prefix("pr-12"), uuid.uuid4())),  # pr-1's name, and more
        made(f"{prefix}-not-a-deployment"),
        made("tandem-pr-1-llm"),  # the program's own
    }
    provider.delete(created.id, created.outs)
    left = {e["id"]: e for e in runpod.rest("GET", "/endpoints").json()}
    assert ours.isdisjoint(left) and others <= set(left)
    templates = {t["id"] for t in runpod.rest("GET", "/templates").json()}
    assert templates == {left[e]["templateId"] for e in others} | {t["id"] for t in before[1]}
    for endpoint_id in others:
        configured(EndpointProvider, runpod).delete(endpoint_id, {})
        configured(TemplateProvider, runpod).delete(left[endpoint_id]["templateId"], {})
