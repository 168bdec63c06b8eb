"""The RunPod dynamic providers, method by method, against the local RunPod's REST API v2, which
refuses requests off RunPod's published spec and whose answers are checked against it. (The
engine tests run them under the real Pulumi engine: tests/engine.)"""

import uuid

import httpx
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config

from infra.runpod.providers import (
    API_BASE,
    API_KEY,
    ApiDeploymentsProvider,
    EndpointProvider,
    RegistryAuthProvider,
    SecretProvider,
    TemplateProvider,
    upgraded,
)
from runpod_api.client import RunPodApiError, RunPodRest
from runpod_api.names import deployment_name, stack_prefix
from tests.runpod_control import CONTROLLED_IMAGE, ControlPlane

KEY = "rp-test-key"
HMAC = "s3cret-hmac-value"
ENV = {"MODEL_NAME": "Qwen/Qwen2.5-1.5B-Instruct", "SIGNING_KEY": HMAC}


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
    config = {API_BASE: runpod.url} | ({API_KEY: key} if key else {})
    provider.configure(ConfigureRequest(Config(config, "tandem")))
    return provider


def template_props(**overrides) -> dict:
    return {
        "name": "tandem-dev-llm",
        "image": CONTROLLED_IMAGE,
        "env": ENV,
        "disk": 30.0,  # as the engine hands every number: a float
        "serverless": True,
    } | overrides


def endpoint_props(template_id: str | None = None, **overrides) -> dict:
    return {
        "name": "tandem-dev-llm",
        "type": "QUEUE",
        "templateId": template_id,
        "image": CONTROLLED_IMAGE,
        "env": ENV,
        "disk": 30.0,
        "gpu": {"pools": ["ADA_24", "AMPERE_24"], "count": 1.0},
        "workers": {"min": 0.0, "max": 2.0, "idleTimeout": 5.0},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4.0},
        "timeout": 600_000.0,
        "flashboot": "FLASHBOOT",
    } | overrides


def new_endpoint(runpod: ControlPlane, **overrides):
    """An endpoint made from a new template: its provider, its properties and the result."""
    template = configured(TemplateProvider, runpod).create(template_props())
    provider = configured(EndpointProvider, runpod)
    props = endpoint_props(template.id, **overrides)
    return provider, props, provider.create(props)


def test_template_create_read_update_delete(runpod):
    provider = configured(TemplateProvider, runpod)
    props = template_props()
    created = provider.create(props)
    live = runpod.rest("GET", f"/v2/templates/{created.id}").json()
    assert live["image"] == CONTROLLED_IMAGE and live["serverless"] is True
    assert live["disk"] == 30 and isinstance(live["disk"], int)
    assert created.outs["env"] == props["env"]

    new_env = {**props["env"], "MAX_CONCURRENCY": "16"}
    diff = provider.diff(created.id, created.outs, {**props, "env": new_env})
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, created.outs, {**props, "env": new_env})
    assert updated.outs["env"]["MAX_CONCURRENCY"] == "16"

    assert provider.read(created.id, updated.outs).outs["env"] == new_env
    provider.delete(created.id, updated.outs)
    assert runpod.rest("GET", f"/v2/templates/{created.id}").status_code == 404
    provider.delete(created.id, updated.outs)  # already gone (404): not an error


def test_endpoint_lifecycle_and_what_replaces(runpod):
    provider, props, created = new_endpoint(runpod)
    live = runpod.rest("GET", f"/v2/serverless/{created.id}").json()
    assert live["gpu"]["pools"] == ["ADA_24", "AMPERE_24"]  # in order
    assert live["workers"] == {"min": 0, "max": 2, "idleTimeout": 5}
    assert live["flashboot"] == "FLASHBOOT" and live["image"] == CONTROLLED_IMAGE
    assert created.outs["templateId"] == props["templateId"]  # never returned: as applied
    assert not provider.diff(created.id, created.outs, props).changes

    more = {**props, "workers": {**props["workers"], "max": 5.0}}
    in_place = provider.diff(created.id, created.outs, more)
    assert in_place.changes and in_place.replaces == []
    assert provider.diff(created.id, created.outs, {**props, "type": "LOAD_BALANCER"}).replaces == [
        "type"
    ]

    updated = provider.update(created.id, created.outs, more)
    assert runpod.rest("GET", f"/v2/serverless/{created.id}").json()["workers"]["max"] == 5
    assert updated.outs["workers"]["max"] == 5
    releases = runpod.rest("GET", f"/v2/serverless/{created.id}/releases").json()
    assert releases["endpointVersion"] == 1  # only what changed was sent: no release

    new_image = {**more, "image": f"{CONTROLLED_IMAGE}-2"}
    assert provider.diff(created.id, updated.outs, new_image).replaces == []
    provider.update(created.id, updated.outs, new_image)
    releases = runpod.rest("GET", f"/v2/serverless/{created.id}/releases").json()
    assert releases["endpointVersion"] == 2  # a new image is a release that rolls the workers
    assert releases["releases"][0]["diff"][0]["field"] == "image"

    provider.delete(created.id, updated.outs)
    assert runpod.rest("GET", f"/v2/serverless/{created.id}").status_code == 404
    assert runpod.rest("GET", f"/v2/templates/{props['templateId']}").status_code == 404  # bound
    provider.delete(created.id, updated.outs)  # already gone: not an error


def test_removing_an_optional_field_is_a_change_that_clears_it(runpod):
    provider, props, created = new_endpoint(runpod, networkVolumes=["vol-1", "vol-2"])
    assert created.outs["networkVolumes"] == ["vol-1", "vol-2"]
    without = {k: v for k, v in props.items() if k != "networkVolumes"}
    diff = provider.diff(created.id, created.outs, without)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, created.outs, without)
    assert "networkVolumes" not in updated.outs
    assert runpod.rest("GET", f"/v2/serverless/{created.id}").json()["networkVolumes"] == []
    assert not provider.diff(created.id, updated.outs, without).changes
    provider.delete(created.id, updated.outs)


def test_what_runpod_fills_in_is_not_a_change_and_what_we_set_is_tracked(runpod):
    provider, props, created = new_endpoint(runpod)
    live = runpod.rest("GET", f"/v2/serverless/{created.id}").json()
    assert live["gpu"]["minCudaVersion"] is None  # RunPod's to fill...
    read = provider.read(created.id, created.outs).outs
    assert (
        "minCudaVersion" not in read["gpu"] and not provider.diff(created.id, read, props).changes
    )

    placed = {
        **props,
        "dataCenterIds": ["EU-RO-1", "EU-SE-1"],
        "gpu": {**props["gpu"], "allowedCudaVersions": ["12.8"]},
    }
    assert provider.diff(created.id, created.outs, placed).replaces == []
    updated = provider.update(created.id, created.outs, placed)
    assert updated.outs["dataCenterIds"] == ["EU-RO-1", "EU-SE-1"]
    assert updated.outs["gpu"]["allowedCudaVersions"] == ["12.8"]
    runpod.rest("PATCH", f"/v2/serverless/{created.id}", json={"dataCenterIds": ["US-TX-3"]})
    assert provider.read(created.id, updated.outs).outs["dataCenterIds"] == ["US-TX-3"]  # drift
    provider.delete(created.id, updated.outs)


def test_read_shows_out_of_band_changes_as_drift(runpod):
    provider, props, created = new_endpoint(runpod)
    runpod.rest(
        "PATCH",
        f"/v2/serverless/{created.id}",
        json={
            "workers": {"max": 3},
            "gpu": {"pools": ["ADA_80_PRO"]},
            "flashboot": "OFF",
            "env": {"MODEL_NAME": "evil/model"},
        },
    )
    state = provider.read(created.id, created.outs).outs
    assert state["workers"]["max"] == 3
    assert state["gpu"]["pools"] == ["ADA_80_PRO"]
    assert state["flashboot"] == "OFF"  # v2 returns it: its drift is seen too
    assert state["env"] == {"MODEL_NAME": "evil/model"}  # the endpoint's own container
    assert provider.diff(created.id, state, props).changes  # the next `up` puts it back

    provider.delete(created.id, state)
    assert provider.read(created.id, state).id == ""  # deleted out of band: gone


def test_state_of_the_v1_release_reads_as_v2_and_updates_in_place(runpod):
    """What the REST API v1 release kept (captured fixture: tests/engine/fixtures/v1-stack)
    diffs against the v2 program as updates, never replacements."""
    v1 = {
        "name": "tandem-dev-llm",
        "templateId": "t1",
        "computeType": "GPU",
        "gpuTypeIds": ["NVIDIA GeForce RTX 4090"],
        "gpuCount": 1.0,
        "workersMin": 0.0,
        "workersMax": 2.0,
        "idleTimeout": 5.0,
        "executionTimeoutMs": 600_000.0,
        "scalerType": "QUEUE_DELAY",
        "scalerValue": 4.0,
        "flashboot": True,
    }
    assert upgraded(v1) == {
        "name": "tandem-dev-llm",
        "type": "QUEUE",
        "templateId": "t1",
        "gpu": {"pools": ["ADA_24"], "count": 1.0, "excludedTypes": ["NVIDIA L4"]},
        "workers": {"min": 0.0, "max": 2.0, "idleTimeout": 5.0},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4.0},
        "timeout": 600_000.0,
        "flashboot": "FLASHBOOT",
    }
    news = endpoint_props(
        "t1",
        gpu={"pools": ["ADA_24"], "count": 1.0, "excludedTypes": ["NVIDIA L4"]},
    )
    diff = configured(EndpointProvider, runpod).diff("e1", v1, news)
    assert diff.changes and diff.replaces == []  # the container joins the endpoint in place
    template = {"name": "t", "imageName": "img", "containerDiskInGb": 30.0, "isServerless": True}
    assert upgraded(template) == {"name": "t", "image": "img", "disk": 30.0, "serverless": True}
    new_template = {"name": "t", "image": "img", "disk": 30.0, "serverless": True}
    assert not configured(TemplateProvider, runpod).diff("t1", template, new_template).changes


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


def test_runpod_problems_reach_the_user_without_secrets():
    """RunPod's problems (RFC 9457) can echo the input: their detail and errors reach the user
    with the key, env values, passwords and secret values masked."""
    from runpod_api.models import RegistryCreate, SecretCreate, TemplateCreate

    def echo(request: httpx.Request) -> httpx.Response:
        problem = {
            "title": "Bad Request",
            "status": 400,
            "detail": f"bad input: {request.content.decode()}",
            "errors": [f"field echo {request.content.decode()}"],
        }
        return httpx.Response(400, json=problem)

    client = RunPodRest(KEY, transport=httpx.MockTransport(echo))
    for body, secret in (
        (TemplateCreate(name="t", image="i", env={"HMAC": HMAC}), HMAC),
        (RegistryCreate(name="r", username="u", password="pw-123456"), "pw-123456"),
        (SecretCreate(name="s", value="value-7890"), "value-7890"),
    ):
        verb = {TemplateCreate: "template", RegistryCreate: "registry", SecretCreate: "secret"}
        with pytest.raises(RunPodApiError) as error:
            getattr(client, f"create_{verb[type(body)]}")(body)
        assert secret not in str(error.value) and "[secret]" in str(error.value)
        assert error.value.errors and secret not in error.value.errors[0]


def test_rate_limits_and_outages_are_retried_except_for_creates():
    from runpod_api.models import TemplateCreate

    answers: list[int] = []
    created: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        assert request.url.path.startswith("/v2/")
        status = answers.pop(0) if answers else 200
        if status == 200 and request.method == "POST":
            created.append("t")
        return httpx.Response(status, json={"id": "t1", "name": "t", "image": "img"})

    client = RunPodRest(KEY, transport=httpx.MockTransport(flaky), backoff_s=0)
    answers[:] = [429, 503]
    assert client.get_template("t1")["name"] == "t"
    answers[:] = [503]
    with pytest.raises(RunPodApiError, match="503 to POST /v2/templates"):
        client.create_template(TemplateCreate(name="t2", image="img"))
    assert created == []  # no second template behind the caller's back
    answers[:] = [500] * 4
    with pytest.raises(RunPodApiError, match="500 to GET"):
        client.get_template("t1")


def test_a_body_off_the_spec_never_leaves_this_machine(runpod):
    from runpod_api.models import EndpointCreate, Gpu, Scaling, Workers
    from runpod_api.spec import SpecViolation

    calls = len(runpod.check.calls)
    body = EndpointCreate(
        name="e",
        image="i",
        gpu=Gpu(pools=["ADA_24"]),
        workers=Workers(idle_timeout=99_999),  # the spec's maximum is 3600
        scaling=Scaling(type="QUEUE_DELAY", queue_delay=4),
    )
    with RunPodRest(KEY, runpod.url) as client, pytest.raises(SpecViolation) as refused:
        client.create_endpoint(body)
    assert "workers.idleTimeout: 99999 is greater than the maximum of 3600" in str(refused.value)
    assert len(runpod.check.calls) == calls


def test_a_registry_credential_is_made_read_back_by_name_replaced_on_change_and_deleted(runpod):
    provider = configured(RegistryAuthProvider, runpod)
    props = {"name": "tandem-dev-ar-1", "username": "_json_key_base64", "password": "a2V5LTE="}
    created = provider.create(props)
    assert runpod.rest("GET", f"/v2/registries/{created.id}").json() == {
        "id": created.id,
        "name": "tandem-dev-ar-1",
    }  # RunPod never returns the username or password: the state keeps what was applied
    assert provider.read(created.id, created.outs).outs == props
    rotated = {**props, "name": "tandem-dev-ar-2", "password": "a2V5LTI="}
    diff = provider.diff(created.id, created.outs, rotated)
    assert diff.changes and sorted(diff.replaces) == ["name", "password"]  # no update route
    template = configured(TemplateProvider, runpod).create(template_props(registry=created.id))
    assert template.outs["registry"] == created.id
    configured(TemplateProvider, runpod).delete(template.id, template.outs)
    provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id == ""  # gone
    provider.delete(created.id, created.outs)  # already gone: not an error


def test_a_registry_credential_name_is_unique(runpod):
    provider = configured(RegistryAuthProvider, runpod)
    props = {"name": "tandem-dev-dup", "username": "_json_key_base64", "password": "c2VjcmV0"}
    created = provider.create(props)
    with pytest.raises(RunPodApiError, match=r"400.*'tandem-dev-dup' exists"):
        provider.create(props)
    provider.delete(created.id, created.outs)


def test_a_template_naming_an_unknown_registry_credential_is_refused(runpod):
    with pytest.raises(RunPodApiError, match="registry 'nope'"):
        configured(TemplateProvider, runpod).create(template_props(registry="nope"))


def test_a_secret_is_made_rotated_in_place_read_without_its_value_and_deleted(runpod):
    provider = configured(SecretProvider, runpod)
    props = {"name": "tandem-dev-hmac", "value": "first-value", "description": "HMAC"}
    created = provider.create(props)
    live = runpod.rest("GET", f"/v2/account/secrets/{created.id}").json()
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


def test_a_secret_name_off_the_spec_is_refused_before_it_is_sent(runpod):
    from runpod_api.spec import SpecViolation

    with pytest.raises(SpecViolation, match="name: '9-starts-with-a-digit' does not match"):
        configured(SecretProvider, runpod).create({"name": "9-starts-with-a-digit", "value": "v"})


def test_the_apis_deployments_go_with_their_stack_and_no_others(runpod):
    """ApiDeployments makes and reads nothing at RunPod; deleting it (the stack's destroy)
    removes the endpoints its API made (and templates of its name, as the v1 release made),
    a flashboot one and one with workers included, and leaves the program's own and other
    stacks' deployments."""
    provider = configured(ApiDeploymentsProvider, runpod)
    prefix = stack_prefix("pr-1")

    def listed() -> tuple[list, list]:
        endpoints = runpod.rest("GET", "/v2/serverless").json()["endpoints"]
        return endpoints, runpod.rest("GET", "/v2/templates").json()["templates"]

    before = listed()
    created = provider.create({"prefix": prefix})
    assert (created.id, created.outs) == (prefix, {"prefix": prefix})
    assert provider.read(created.id, created.outs).outs == {"prefix": prefix}
    assert not provider.diff(created.id, created.outs, {"prefix": prefix}).changes
    renamed = provider.diff(created.id, created.outs, {"prefix": stack_prefix("pr-2")})
    assert renamed.replaces == ["prefix"]
    assert listed() == before

    def made(name: str, **endpoint) -> str:
        props = endpoint_props(name=name) | endpoint
        return configured(EndpointProvider, runpod).create(props).id

    ours = {
        made(deployment_name(prefix, uuid.uuid4())),
        made(deployment_name(prefix, uuid.uuid4()), flashboot="OFF", workers={"min": 1.0}),
    }
    old_template = configured(TemplateProvider, runpod).create(
        template_props(name=deployment_name(prefix, uuid.uuid4()))
    )
    others = {
        made(deployment_name(stack_prefix("pr-12"), uuid.uuid4())),  # pr-1's name, and more
        made(f"{prefix}-not-a-deployment"),
        made("tandem-pr-1-llm"),  # the program's own
    }
    provider.delete(created.id, created.outs)
    endpoints, templates = listed()
    left = {e["id"] for e in endpoints}
    assert ours.isdisjoint(left) and others <= left
    assert old_template.id not in {t["id"] for t in templates}
    for endpoint_id in others:
        configured(EndpointProvider, runpod).delete(endpoint_id, {})
