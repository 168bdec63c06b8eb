"""The RunPod dynamic providers, method by method, against the fake control plane, which checks
every request and response against RunPod's published spec."""

import pytest

from infra.runpod.client import RunPodApiError, RunPodRest
from infra.runpod.providers import EndpointProvider, TemplateProvider
from tests.infra.fake_runpod import FakeRunPod


@pytest.fixture
def runpod():
    with FakeRunPod() as fake:
        yield fake
    assert fake.violations == []


def template_props(runpod: FakeRunPod, **overrides) -> dict:
    return {
        "name": "tandem-dev-llm",
        "imageName": "europe-docker.pkg.dev/p/tandem/llm@sha256:" + "a" * 64,
        "env": {"MODEL_NAME": "Qwen/Qwen2.5-1.5B-Instruct", "EMBEDDING_HMAC_SECRET": "s3cret"},
        "containerDiskInGb": 30,
        "isServerless": True,
        "apiKey": runpod.api_key,
        "apiBase": runpod.base_url,
    } | overrides


def endpoint_props(runpod: FakeRunPod, template_id: str, **overrides) -> dict:
    return {
        "name": "tandem-dev-llm",
        "templateId": template_id,
        "computeType": "GPU",
        "gpuTypeIds": ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A5000"],
        "gpuCount": 1,
        "workersMin": 0,
        "workersMax": 2,
        "idleTimeout": 5,
        "executionTimeoutMs": 600_000,
        "scalerType": "QUEUE_DELAY",
        "scalerValue": 4,
        "flashboot": True,
        "apiKey": runpod.api_key,
        "apiBase": runpod.base_url,
    } | overrides


def test_template_create_read_update_delete(runpod):
    provider = TemplateProvider()
    props = template_props(runpod)
    created = provider.create(props)
    assert runpod.templates[created.id]["imageName"] == props["imageName"]
    assert runpod.templates[created.id]["isServerless"] is True
    assert created.outs["env"] == props["env"]

    new_env = {**props["env"], "MAX_CONCURRENCY": "16"}
    diff = provider.diff(created.id, created.outs, {**props, "env": new_env})
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, created.outs, {**props, "env": new_env})
    assert updated.outs["env"]["MAX_CONCURRENCY"] == "16"

    assert provider.read(created.id, updated.outs).outs["env"] == new_env
    provider.delete(created.id, updated.outs)
    assert created.id not in runpod.templates
    provider.delete(created.id, updated.outs)  # already gone: not an error


def test_endpoint_lifecycle_and_what_replaces(runpod):
    template = TemplateProvider().create(template_props(runpod))
    provider = EndpointProvider()
    props = endpoint_props(runpod, template.id)
    created = provider.create(props)
    live = runpod.endpoints[created.id]
    assert live["gpuTypeIds"] == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A5000"]  # in order
    assert (live["workersMin"], live["workersMax"]) == (0, 2)

    in_place = provider.diff(created.id, created.outs, {**props, "workersMax": 5})
    assert in_place.changes and in_place.replaces == []
    replace = provider.diff(created.id, created.outs, {**props, "computeType": "CPU"})
    assert replace.replaces == ["computeType"]
    assert not provider.diff(created.id, created.outs, props).changes

    updated = provider.update(created.id, created.outs, {**props, "workersMax": 5})
    assert runpod.endpoints[created.id]["workersMax"] == updated.outs["workersMax"] == 5
    provider.delete(created.id, updated.outs)
    assert runpod.endpoints == {}


def test_read_shows_out_of_band_changes_as_drift(runpod):
    template = TemplateProvider().create(template_props(runpod))
    provider = EndpointProvider()
    props = endpoint_props(runpod, template.id)
    created = provider.create(props)
    runpod.endpoints[created.id].update(workersMin=3, gpuTypeIds=["NVIDIA H100 80GB HBM3"])
    state = provider.read(created.id, created.outs).outs
    assert state["workersMin"] == 3
    assert state["gpuTypeIds"] == ["NVIDIA H100 80GB HBM3"]
    assert state["flashboot"] is True  # RunPod never returns it: the last applied value stays
    assert provider.diff(created.id, state, props).changes  # the next `up` puts it back

    del runpod.endpoints[created.id]
    assert provider.read(created.id, state).id == ""  # deleted out of band: gone


def test_the_api_key_comes_from_the_environment_when_the_stack_has_none(runpod, monkeypatch):
    props = template_props(runpod)
    del props["apiKey"]
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    with pytest.raises(ValueError, match="RUNPOD_API_KEY"):
        TemplateProvider().create(props)
    monkeypatch.setenv("RUNPOD_API_KEY", runpod.api_key)
    assert TemplateProvider().create(props).id in runpod.templates


def test_a_wrong_key_says_what_runpod_answered_without_the_key(runpod):
    with pytest.raises(RunPodApiError) as error:
        TemplateProvider().create(template_props(runpod, apiKey="rp-wrong-key-123"))
    assert "401" in str(error.value)
    assert "rp-wrong-key-123" not in str(error.value)


def test_rate_limits_and_outages_are_retried_except_for_creates(runpod):
    client = RunPodRest(runpod.api_key, runpod.base_url, backoff_s=0)
    created = client.create_template({"name": "t", "imageName": "img"})
    runpod.failures = [429, 503]
    assert client.get_template(created["id"])["name"] == "t"
    runpod.failures = [503]
    with pytest.raises(RunPodApiError, match="503 to POST /templates"):
        client.create_template({"name": "t2", "imageName": "img"})
    assert len(runpod.templates) == 1  # no second template behind the caller's back
    runpod.failures = [500] * 4
    with pytest.raises(RunPodApiError, match="500 to GET"):
        client.get_template(created["id"])
    client.close()


def test_a_request_off_the_spec_is_caught(runpod):
    client = RunPodRest(runpod.api_key, runpod.base_url)
    with pytest.raises(RunPodApiError, match="400"):
        client.create_endpoint({"templateId": "t1", "idleTimeout": 99_999})  # max is 3600
    assert runpod.violations
    runpod.violations.clear()
    client.close()
