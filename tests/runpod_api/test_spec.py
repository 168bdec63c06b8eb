"""runpod_api's client against RunPod's published REST API v2 spec, with a JSON Schema 2020-12
validator: every body the client can build is one the spec accepts (and one it refuses never
leaves), every answer it parses is one the spec documents (RunPod's own examples, served back
to it), and a refusal names the field as RunPod would."""

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from runpod_api import spec
from runpod_api.client import RunPodApiError, RunPodRest
from runpod_api.models import (
    EndpointCreate,
    EndpointUpdate,
    Gpu,
    RegistryCreate,
    Scaling,
    SecretCreate,
    SecretUpdate,
    TemplateCreate,
    TemplateUpdate,
    Workers,
)

FULL_ENDPOINT = EndpointCreate(
    name="e",
    template_id="t1",
    image="img:1",
    env={"A": "b", "S": "{{ RUNPOD_SECRET_s }}"},
    disk=30.0,  # the engine's float
    registry="r1",
    gpu=Gpu(
        pools=["ADA_24"], excluded_types=["NVIDIA L4"], count=1, allowed_cuda_versions=["12.8"]
    ),
    workers=Workers(min=0, max=2.0, idle_timeout=5),
    scaling=Scaling(type="REQUEST_COUNT", request_count=3),
    timeout=600_000,
    flashboot="FLASHBOOT",
    data_center_ids=["EU-RO-1"],
    network_volumes=["v1"],
)
BODIES = [
    FULL_ENDPOINT,
    EndpointCreate(
        name="e",
        image="i",
        gpu=Gpu(pools=["ADA_24"]),
        scaling=Scaling(type="QUEUE_DELAY", queue_delay=4),
    ),
    EndpointUpdate(env={"A": "c"}),
    EndpointUpdate(workers=Workers(max=3), gpu=Gpu(pools=["AMPERE_16"]), network_volumes=[]),
    TemplateCreate(name="t", image="i", env={}, disk=20, registry="r", serverless=True),
    TemplateUpdate(image="i2"),
    RegistryCreate(name="r", username="u", password="p"),
    SecretCreate(name="s", value="v", description="d"),
    SecretUpdate(value="v2"),
]


def test_the_validator_is_json_schema_2020_12():
    assert spec.validator("CreateEndpointRequest").META_SCHEMA == Draft202012Validator.META_SCHEMA


@pytest.mark.parametrize("body", BODIES, ids=lambda body: type(body).__name__)
def test_every_body_the_client_builds_is_one_the_spec_accepts(body):
    sent = body.body()
    assert spec.validator(body.schema_name).is_valid(sent)  # the spec's own, 2020-12
    if isinstance(body, EndpointCreate) and body.workers:
        assert isinstance(sent["workers"]["max"], int)  # typed by the model, as RunPod wants


@pytest.mark.parametrize(
    ("schema", "body", "status", "words"),
    [
        ("CreateEndpointRequest", {"name": "e"}, 400, "'type' is a required property"),
        ("UpdateEndpointRequest", {"gpuTypeIds": ["x"]}, 400, "unknown field gpuTypeIds"),
        ("UpdateEndpointRequest", {"workers": {"mn": 1}}, 400, "unknown field workers.mn"),
        ("UpdateEndpointRequest", {"timeout": "1s"}, 422, "timeout: '1s' is not of type"),
        ("UpdateEndpointRequest", {"flashboot": "ON"}, 422, "flashboot: 'ON' is not one of"),
        ("CreateTemplateRequest", {"name": "t"}, 400, "'image' is a required property"),
        ("SecretCreateInput", {"name": "9x", "value": "v"}, 422, "name: '9x' does not match"),
    ],
)
def test_a_body_off_the_spec_names_the_field_and_runpods_status(schema, body, status, words):
    with pytest.raises(spec.SpecViolation) as refused:
        spec.check(schema, body)
    assert refused.value.status == status and words in str(refused.value)


def examples() -> list[tuple[str, str, str, Any]]:
    """RunPod's own example answers (method, path, status, body) for what the client calls."""
    found = []
    for template, item in spec.document()["paths"].items():
        if not template.startswith(("/v2/serverless", "/v2/templates", "/v2/registries")) and (
            template not in ("/v2/catalog/gpus", "/v2/billing/serverless")
        ):
            continue
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, answer in operation["responses"].items():
                content = (answer.get("content") or {}).get("application/json") or {}
                for example in (content.get("examples") or {}).values():
                    path = template.replace("{id}", "ep1").replace("{workerId}", "w1")
                    found.append((method.upper(), path, status, example["value"]))
    return found


@pytest.mark.parametrize(("method", "path", "status", "body"), examples())
def test_runpods_example_answers_are_valid_and_parsed(method, path, status, body):
    operation = spec.operation(method, path)
    assert operation is not None and operation.response_errors(int(status), body) == []


def test_the_client_parses_each_documented_answer():
    answers = {(m, p): body for m, p, status, body in examples() if status.startswith("2")}

    def documented(request: httpx.Request) -> httpx.Response:
        key = (request.method, request.url.path)
        return httpx.Response(200 if request.method != "POST" else 201, json=answers[key])

    client = RunPodRest("k", transport=httpx.MockTransport(documented))
    assert client.list_endpoints()[0]["id"] == "4m7x2k9q"
    assert client.get_endpoint("ep1")["gpu"]["pools"] == ["ADA_24"]
    assert client.workers("ep1")["summary"]["total"] == 2
    assert client.releases("ep1")["rollout"]["inProgress"] is True
    assert client.gpus()[0]["pool"] == "ADA_24" and client.gpus()[0]["price"]["serverless"]
    assert client.serverless_billing(endpoint_id="ep1")["records"][0]["totalAmount"] == 8.9
    assert client.list_templates()[0]["id"]
    assert client.create_endpoint(FULL_ENDPOINT)["id"]


def test_a_problem_reaches_the_user_with_its_detail_and_errors():
    problem = {
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "gpu.pools: unknown pool",
        "errors": ["gpu.pools[0]: 'X' is not a pool"],
    }

    def refuse(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            422, json=problem, headers={"content-type": "application/problem+json"}
        )

    client = RunPodRest("rp-spec-key", transport=httpx.MockTransport(refuse))
    with pytest.raises(RunPodApiError) as refused:
        client.update_endpoint("ep1", EndpointUpdate(gpu=Gpu(pools=["X"])))
    error = refused.value
    assert (error.status, error.detail, error.errors) == (422, problem["detail"], problem["errors"])
    assert "gpu.pools[0]: 'X' is not a pool" in str(error)
    # The shape RunPod documents for it:
    assert spec.operation("PATCH", "/v2/serverless/ep1").response_errors(422, problem) == []
