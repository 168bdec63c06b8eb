"""`/v1/deployments` against the local RunPod's control plane (its REST v2 held to RunPod's
spec) with the real llm worker in its own process: a model directory (the tiny Llama built
here) goes from 202 to `ready` through the worker's signed callback, answers a chat
completion at its endpoint, notifies a webhook and is deleted; a model the worker cannot load
fails with the worker's reason; models the Hub refuses (a fake of its API) fail before anything
is made at RunPod; a webhook that keeps failing ends `webhook_failed`; and bad requests."""

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
from pydantic import HttpUrl
from sqlalchemy import exists, insert, select

from app.core import keys
from app.core.errors import InvalidInput
from app.models import ApiKey, Deployment, WebhookSecret
from app.services import deployment_webhooks, tenant_keys
from app.services.api_keys import create_api_key, hash_key
from app.services.deployment_runner import READY_PATH, DeploymentRunner
from app.services.deployments import check_webhook_url, due
from gpu_worker.common.signing import sign
from gpu_worker.imagegen.tiny import build_tiny_sd
from gpu_worker.llm.tiny import build_tiny_llama
from runpod_api.names import deployment_name
from tests.app.test_api import assert_error
from tests.conftest import (
    HMAC_SECRET,
    WORKER_ENV,
    Api,
    controlled_backend,
    make_settings,
    serve_api,
)
from tests.hf_hub import FakeHub, diffusers_repo, hosted
from tests.net import free_port, receiver
from tests.runpod_control import CONTROLLED_IMAGE, ControlPlane

pytestmark = pytest.mark.vllm
KEY = "rp-deployments-key"
IMAGE = "tandem/llm:test"  # the stack's llm worker image
IMAGEGEN_IMAGE = "tandem/imagegen:test"  # and its imagegen worker image
LLAMA = {"architectures": ["LlamaForCausalLM"]}
HUB_MODELS = {
    "acme/chat": {"config": LLAMA, "files": {"model.safetensors": 1_000_000}},
    "acme/gated-chat": {
        "config": LLAMA,
        "files": {"model.safetensors": 1_000_000},
        "gated": "manual",
    },
    "acme/vision": {"config": {"architectures": ["CLIPModel"]}, "files": {"model.bin": 600}},
    "acme/huge-chat": {"config": LLAMA, "files": {"model.safetensors": 90_000_000_000}},
    "acme/in-an-outage": {"unavailable": True},
    "acme/flux": diffusers_repo("FluxPipeline", {"transformer/model.safetensors": 23.8,
                                                 "text_encoder_2/model.safetensors": 9.5}),
    "acme/kandinsky": diffusers_repo("KandinskyV22Pipeline", {"unet/model.safetensors": 2.0}),
}  # fmt: skip


@pytest.fixture(scope="module")
def control():
    images = {IMAGE: "gpu_worker.llm", IMAGEGEN_IMAGE: "gpu_worker.imagegen"}
    with ControlPlane(KEY, images=images, machine_env=WORKER_ENV) as plane:
        yield plane
    assert plane.violations == []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("deployed-llama"))


@pytest.fixture(scope="module")
def hub():
    with FakeHub(dict(HUB_MODELS)) as server:
        yield server
    assert server.unserved == []


@pytest.fixture(scope="module")
async def api(database_url, control, hub):
    settings = make_settings(
        database_url,
        runpod_api_key=KEY,
        runpod_rest_api=control.url,
        runpod_api_base=control.jobs_url,
        deployment_image=IMAGE,
        deployment_imagegen_image=IMAGEGEN_IMAGE,
        deployment_name_prefix="tandem-deploy-pr-3",  # as stack pr-3 sets it
        signing_secret=HMAC_SECRET,
        public_url=f"http://127.0.0.1:{free_port()}",
        hf_endpoint=hub.url,
        job_poll_seconds=0.2,
        deployment_webhook_retry_seconds=0.1,
        deployment_ready_seconds=300,
        max_live_deployments=3,
        max_deployment_workers=2,
        rate_limit_per_minute=100_000,  # the tests poll
    )
    async for served in serve_api(settings, controlled_backend()):
        yield served


async def settled(api, deployment_id: str, timeout_s: float = 90) -> dict:
    """The deployment once its status stops moving (ready, failed, webhook_failed...)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await api.get(f"/v1/deployments/{deployment_id}")
        assert response.status_code == 200, response.text
        deployment = response.json()
        busy = deployment["status"] in (
            "validating",
            "selecting_gpu",
            "creating_endpoint",
            "downloading_model",
            "loading_model",
        )
        pending_webhook = deployment["webhook_url"] and not deployment["deliveries"]
        if not busy and not pending_webhook and deployment["status"] != "deleting":
            return deployment
        assert time.monotonic() < deadline, json.dumps(deployment)
        await asyncio.sleep(0.3)


def openai_client(api) -> openai.AsyncOpenAI:
    """The official client on the API, as a user's program reaches it."""
    return openai.AsyncOpenAI(base_url=f"{api.client.base_url}/v1", api_key=api.key, max_retries=0)


def statuses(deployment: dict) -> list[str]:
    return [event["status"] for event in deployment["events"]]


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in headers["X-Tandem-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


async def test_a_model_goes_ready_through_the_workers_callback_serves_and_is_deleted(
    api, control, tiny
):
    server, hook = receiver(200)
    body = {
        "model": str(tiny),
        "name": "tiny-chat",
        "task": "generate",
        "workers_min": 1,
        "workers_max": 1,
        "webhook_url": f"http://127.0.0.1:{server.server_address[1]}/hook",
    }
    started = time.monotonic()
    created = await api.post("/v1/deployments", json=body)
    assert created.status_code == 202, created.text
    answer = created.json()
    assert answer["status"] == "validating" and answer["name"] == "tiny-chat"
    secret = answer["webhook_secret"]
    assert secret.startswith("whsec_")

    deployment = await settled(api, answer["deployment_id"])
    ready_s = time.monotonic() - started
    assert deployment["status"] == "ready", deployment
    assert statuses(deployment) == [
        "validating",
        "selecting_gpu",
        "creating_endpoint",
        "downloading_model",
        "loading_model",
        "ready",
    ]
    assert deployment["gpu_type"] == "AMPERE_24" and deployment["error"] is None
    endpoint_id = deployment["endpoint_id"]
    endpoint = control.rest("GET", f"/v2/serverless/{endpoint_id}").json()
    # Its name says which API (stack) made it: the stack's destroy removes it.
    made_for = uuid.UUID(answer["deployment_id"])
    assert endpoint["name"] == deployment_name("tandem-deploy-pr-3", made_for)
    assert endpoint["image"] == IMAGE and endpoint["gpu"]["pools"] == ["AMPERE_24"]
    assert endpoint["gpu"]["excludedTypes"] == ["NVIDIA RTX A4500", "NVIDIA GeForce RTX 3090"]
    assert endpoint["env"]["MODEL_NAME"] == str(tiny) and endpoint["env"]["TASK"] == "generate"
    assert endpoint["env"]["VLLM_MAX_N_SEQUENCES"] == "8"  # vLLM's own cap is the API's MAX_N
    # No stack secret in what the account holds: the worker's key is its deployment's own,
    # and reaches it as a reference to a RunPod secret, filled in as the worker boots.
    assert_no_stack_secret(control, endpoint)
    reference = endpoint["env"]["SIGNING_KEY"]
    assert reference == f"{{{{ RUNPOD_SECRET_{endpoint['name']}-signing_key }}}}"
    booted = control.emulator.control.boot_env(endpoint["env"])
    assert booted["SIGNING_KEY"] == keys.deployment_key(HMAC_SECRET, made_for)
    [worker] = deployment["workers"]  # as RunPod lists them (serving once it asks for a job)
    assert worker["status"] in ("INITIALIZING", "IDLE") and not worker["stale"]
    assert worker["gpu_type"] == "NVIDIA RTX A5000" and worker["data_center"] == "LOCAL"

    # Served through the API as the stack's models are, by the official client.
    client = openai_client(api)
    completion = await client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.model == "tiny-chat"
    assert "tiny-chat" in [card.id async for card in client.models.list()]
    turn = {"user_id": "u1", "message": "Hi", "max_tokens": 4, "model": "tiny-chat"}
    chat = await api.post("/v1/chat", json=turn)  # the native chat, stored as a turn
    assert chat.status_code == 200, chat.text
    assert chat.json()["model_id"] == "tiny-chat"

    [(headers, sent)] = hook.received
    assert signed_by(secret, headers, sent)
    assert json.loads(sent) | {"status": "ready"} == json.loads(sent)
    assert [d["status_code"] for d in deployment["deliveries"]] == [200]

    assert (await api.delete(f"/v1/deployments/{answer['deployment_id']}")).status_code == 204
    assert (await api.get(f"/v1/deployments/{answer['deployment_id']}")).status_code == 404
    assert control.rest("GET", f"/v2/serverless/{endpoint_id}").status_code == 404
    secrets = control.rest("GET", "/v2/account/secrets").json()["secrets"]
    assert not [secret for secret in secrets if secret["name"].startswith(endpoint["name"])]
    assert (await api.delete(f"/v1/deployments/{answer['deployment_id']}")).status_code == 204
    server.shutdown()
    print(f"202 to ready: {ready_s:.1f} s")


async def test_a_diffusion_model_is_deployed_on_the_imagegen_image_and_draws(
    api, control, tmp_path
):
    """A diffusers directory (a tiny Stable Diffusion): its task told from model_index.json,
    deployed on the imagegen image, ready through its worker's callback, and drawing through
    `POST /v1/images/generations` with `model: <deployment>` (the official client)."""
    pipeline = build_tiny_sd(tmp_path / "tiny-sd")
    body = {"model": str(pipeline), "name": "tiny-sd", "gpu_tier": "24gb", "workers_max": 1}
    created = await api.post("/v1/deployments", json=body)
    assert created.status_code == 202, created.text
    deployment = await settled(api, created.json()["deployment_id"])
    assert (deployment["status"], deployment["task"]) == ("ready", "image"), deployment
    assert statuses(deployment)[-2:] == ["downloading_model", "ready"]
    endpoint = control.rest("GET", f"/v2/serverless/{deployment['endpoint_id']}").json()
    assert endpoint["image"] == IMAGEGEN_IMAGE and "TASK" not in endpoint["env"]

    client = openai_client(api)
    result = await client.images.generate(model="tiny-sd", prompt="a red cat", size="128x128")
    assert result.model == "tiny-sd" and result.size == "128x128"
    image = await api.get(f"/v1/images/{result.data[0].id}")
    assert image.json()["metadata"]["generated"]["model"] == "tiny-sd"
    with pytest.raises(openai.UnprocessableEntityError, match="tiny-sd serves task image"):
        await client.chat.completions.create(
            model="tiny-sd", messages=[{"role": "user", "content": "Hi"}]
        )
    assert (await api.delete(f"/v1/deployments/{deployment['id']}")).status_code == 204


async def test_a_tenants_own_runpod_account_makes_serves_and_removes_its_deployments(
    api, control, tmp_path, monkeypatch, caplog
):
    """A tenant's RunPod key: refused when RunPod refuses it (nothing made or kept), registered
    with the deployment request, never shown or logged, used for every call of that tenant's
    deployment (its template, endpoint, jobs and removal at RunPod), and removed only once no
    deployment is left in that account; a key opening another account is refused while
    deployments are in this one."""
    tenant_key = "rp-tenant-own-account-key"
    own = Api(api.app, api.client, await create_api_key(api.app.state.sessionmaker, "own", "own"))
    pipeline = build_tiny_sd(tmp_path / "own-sd")
    body = {"model": str(pipeline), "name": "own-sd", "workers_max": 1}

    refused = await own.post("/v1/deployments", json=body | {"runpod_key": tenant_key})
    error = assert_error(refused, 422, "validation_error")
    assert error["message"].startswith("runpod_key: RunPod refused the key (HTTP 401)")
    assert (await own.get("/v1/deployments")).json()["items"] == []
    assert (await own.get("/v1/tenant/runpod-key")).json() == {
        "configured": False, "hint": None, "updated_at": None,
    }  # fmt: skip

    control.emulator.api_keys.add(tenant_key)  # the tenant's account (the calls show the key)
    created = await own.post("/v1/deployments", json=body | {"runpod_key": tenant_key})
    assert created.status_code == 202, created.text
    registered = (await own.get("/v1/tenant/runpod-key")).json()
    assert registered["configured"] and registered["hint"] == "…-key"
    deployment = await settled(own, created.json()["deployment_id"])
    assert (deployment["status"], deployment["own_account"]) == ("ready", True), deployment
    endpoint_id = deployment["endpoint_id"]
    as_tenant = {"Authorization": f"Bearer {tenant_key}"}  # the tenant reads its account
    async with httpx.AsyncClient(base_url=control.url, headers=as_tenant) as account:
        endpoint = (await account.get(f"/v2/serverless/{endpoint_id}")).json()
    assert_no_stack_secret(control, endpoint)
    client = openai.AsyncOpenAI(base_url=f"{api.client.base_url}/v1", api_key=own.key)
    result = await client.images.generate(model="own-sd", prompt="a red cat", size="128x128")
    assert result.model == "own-sd"

    in_use = assert_error(await own.delete("/v1/tenant/runpod-key"), 409, "conflict")
    assert in_use["message"].endswith(": own-sd")
    monkeypatch.setattr(tenant_keys, "check_with_runpod", lambda _settings, _key: set())
    other_account = {"runpod_key": "rp-a-key-of-another-account"}
    moved = assert_error(
        await own.put("/v1/tenant/runpod-key", json=other_account), 409, "conflict"
    )
    message = moved["message"]
    assert "another RunPod account" in message and message.endswith("own-sd")
    monkeypatch.undo()

    assert (await own.delete(f"/v1/deployments/{deployment['id']}")).status_code == 204
    assert (await own.delete("/v1/tenant/runpod-key")).status_code == 204
    assert (await own.get("/v1/tenant/runpod-key")).json()["configured"] is False

    calls = [(method, path, key) for method, path, key in control.check.calls if key == tenant_key]
    for call in [
        ("GET", "/v2/catalog/gpus"),
        ("POST", "/v2/serverless"),
        ("POST", f"/v2/{endpoint_id}/runsync"),
        ("DELETE", f"/v2/serverless/{endpoint_id}"),
    ]:
        assert (*call, tenant_key) in calls, call
    assert not [c for c in control.check.calls if endpoint_id in c[1] and c[2] == KEY]
    assert tenant_key not in caplog.text
    async with api.app.state.engine.connect() as conn:
        stored = await conn.execute(select(Deployment.env).where(Deployment.name == "own-sd"))
        assert tenant_key not in json.dumps(stored.scalar_one())


async def test_a_hub_model_is_downloaded_by_its_worker_then_loaded(api, hub, tiny, tmp_path):
    """A Hub id (the tiny Llama's files on the fake Hub): the worker fetches the weights with
    vLLM's loader from the Hub the API checked it on (HF_ENDPOINT), says it is loading them,
    then serves."""
    hub.models["acme/tiny-llama"] = hosted(tiny)
    body = {
        "model": "acme/tiny-llama",
        "task": "generate",
        "workers_min": 1,
        "env": {"HF_HOME": str(tmp_path / "hf-cache")},  # the worker's own cache
    }
    created = await api.post("/v1/deployments", json=body)
    assert created.status_code == 202, created.text
    deployment = await settled(api, created.json()["deployment_id"])
    assert deployment["status"] == "ready", deployment
    assert statuses(deployment)[-3:] == ["downloading_model", "loading_model", "ready"]
    weights = "/acme/tiny-llama/resolve/main/model.safetensors"
    assert f"GET {weights}" in hub.requests  # downloaded, not read from a directory
    assert list((tmp_path / "hf-cache").rglob("model.safetensors"))
    client = openai_client(api)
    completion = await client.completions.create(
        model=deployment["name"], prompt="Hi", max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert (await api.delete(f"/v1/deployments/{deployment['id']}")).status_code == 204


async def test_a_model_the_worker_cannot_load_fails_with_the_workers_reason(api, control, tiny):
    broken = tiny.parent / "broken-llama"
    broken.mkdir()
    (broken / "config.json").write_text((tiny / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not weights")
    # No minimum of workers: the runner's warm-up request is what starts one.
    created = await api.post("/v1/deployments", json={"model": str(broken), "task": "generate"})
    deployment = await settled(api, created.json()["deployment_id"])
    assert deployment["status"] == "failed", deployment
    assert deployment["error"].startswith("the worker could not load the model: ")
    assert control.rest("GET", f"/v2/serverless/{deployment['endpoint_id']}").status_code == 404


@pytest.mark.parametrize(
    ("model", "fields", "reason"),
    [
        ("acme/none", {}, "no model 'acme/none' on the Hugging Face Hub"),
        ("acme/gated-chat", {}, "acme/gated-chat is gated on the Hugging Face Hub: give an hf_"),
        ("acme/vision", {}, "acme/vision has architecture CLIPModel; the worker serves generate"),
        ("acme/huge-chat", {}, "the model needs about 110 GB of GPU memory and no allowed GPU"),
        ("/no/such/model", {}, "/no/such/model is not a model directory: it has no config.json"),
        ("acme/chat", {"task": "image"}, "acme/chat is not a diffusers repository (it has no "),
        ("acme/flux", {}, "acme/flux is a diffusers FluxPipeline: deploy it with task image"),
        ("acme/kandinsky", {"task": None}, "acme/kandinsky is a diffusers KandinskyV22Pipeline"),
        ("acme/flux", {"task": None, "gpu_tier": "24gb"}, "the model needs about 42 GB of GPU "
         "memory: 24gb is too small; the smallest allowed GPU pool that holds it is AMPERE_48 (48 "
         "GB: gpu_tier 48gb)"),
    ],
)  # fmt: skip
async def test_models_that_cannot_be_deployed_are_refused_before_anything_is_made(
    api, control, model, fields, reason
):
    before = control.rest("GET", "/v2/serverless").json()
    body = {"model": model, "task": "generate"} | fields
    response = await api.post("/v1/deployments", json=body)
    error = assert_error(response, 422, "validation_error")
    assert error["message"].startswith(f"model: {reason}")
    assert control.rest("GET", "/v2/serverless").json() == before
    listed = (await api.get("/v1/deployments")).json()["items"]
    assert model not in [item["model"] for item in listed]


async def test_a_model_the_hub_cannot_answer_for_is_accepted_and_checked_later(api, control):
    """A Hub outage does not refuse the request: the runner checks the model again later; a
    request without a task waits for the Hub to tell it (503)."""
    untold = await api.post("/v1/deployments", json={"model": "acme/in-an-outage"})
    assert_error(untold, 503, "hub_unavailable")
    created = await api.post(
        "/v1/deployments", json={"model": "acme/in-an-outage", "task": "generate"}
    )
    assert created.status_code == 202, created.text
    deployment_id = created.json()["deployment_id"]
    await api.app.state.deployments.run_due()
    deployment = (await api.get(f"/v1/deployments/{deployment_id}")).json()
    assert statuses(deployment) == ["validating"] and deployment["error"] is None
    assert (await api.delete(f"/v1/deployments/{deployment_id}")).status_code == 204


async def test_a_webhook_that_keeps_failing_ends_webhook_failed(api):
    server, hook = receiver(500)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    # A deployment RunPod refuses (workers written past the API's own check): failed at once.
    deployment_id = await creating_endpoint(
        api, "hooked", workers_min=2, workers_max=1, webhook_url=url
    )
    deadline = time.monotonic() + 30
    while (deployment := (await api.get(f"/v1/deployments/{deployment_id}")).json())[
        "status"
    ] != "webhook_failed":
        assert time.monotonic() < deadline, json.dumps(deployment)
        await asyncio.sleep(0.2)
    assert [(d["attempt"], d["status_code"]) for d in deployment["deliveries"]] == [
        (1, 500),
        (2, 500),
        (3, 500),
    ]
    assert len(hook.received) == 3 and statuses(deployment)[-2:] == ["failed", "webhook_failed"]
    server.shutdown()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"gpu": "NVIDIA H200"}, "gpu: 'NVIDIA H200' is not allowed"),
        ({"workers_max": 3}, "workers_max: 3 is over this API's cap of 2"),
        ({"workers_min": 2, "workers_max": 1}, "workers_min: must not be more than workers_max"),
        ({"env": {"MODEL_NAME": "x"}}, "env: MODEL_NAME may not be set by a deployment"),
        # Code execution on the worker through a crafted Hub repository, or a model, tokenizer
        # or Hub of the tenant's choosing: none of them is an engine setting a tenant may give.
        ({"env": {"TRUST_REMOTE_CODE": "true"}}, "env: TRUST_REMOTE_CODE may not be set"),
        ({"env": {"TOKENIZER": "x", "VLLM_PLUGINS": "x"}}, "env: TOKENIZER, VLLM_PLUGINS may"),
        ({"env": {"HF_ENDPOINT": "http://evil"}}, "env: HF_ENDPOINT may not be set"),
        ({"workers_min": 2, "workers_max": 2}, "workers_min: 2 is over this API's cap of 1"),
        ({"idle_timeout": 3600}, "idle_timeout: 3600 s is over this API's cap of 300 s"),
        ({"task": "paint"}, "task"),
        ({"model": "not a model id"}, "model"),
        ({"webhook_url": "ftp://example.com"}, "webhook_url"),
        ({"hf_token": "hf_tøken"}, "hf_token"),
    ],
)
async def test_bad_requests_are_refused_and_make_nothing(api, body, words):
    response = await api.post(
        "/v1/deployments", json={"model": "acme/chat", "task": "generate"} | body
    )
    error = assert_error(response, 422, "validation_error")
    assert words in error["message"]


async def test_a_chat_naming_no_deployment_is_refused(api):
    turn = {"user_id": "u1", "message": "Hi", "model": "no-such-deployment"}
    error = assert_error(await api.post("/v1/chat", json=turn), 422, "validation_error")
    assert error["message"].startswith("model: the tenant has no deployment 'no-such-deployment'")


@contextlib.asynccontextmanager
async def runner_paused(api) -> AsyncIterator[None]:
    """This instance's runner stopped: what is created meanwhile stays in `validating`."""
    runner = api.app.state.deployments
    await runner.stop()
    try:
        yield
    finally:
        runner.start()


async def test_names_are_unique_and_other_tenants_see_nothing(api, database_url):
    body = {"model": "acme/chat", "task": "generate", "name": "mine"}
    async with runner_paused(api):
        first = await api.post("/v1/deployments", json=body)
        assert first.status_code == 202
        assert_error(await api.post("/v1/deployments", json=body), 409, "conflict")
        from app.services.api_keys import create_api_key

        other = await create_api_key(api.app.state.sessionmaker, "other", tenant="someone-else")
        headers = {"Authorization": f"Bearer {other}"}
        deployment_id = first.json()["deployment_id"]
        response = await api.client.get(f"/v1/deployments/{deployment_id}", headers=headers)
        assert_error(response, 404, "not_found")
        assert (await api.client.get("/v1/deployments", headers=headers)).json()["items"] == []
        assert (
            await api.client.delete(f"/v1/deployments/{deployment_id}", headers=headers)
        ).status_code == 404
        listed = (await api.get("/v1/deployments", params={"limit": 1})).json()
        assert len(listed["items"]) == 1 and listed["next_cursor"]
        assert (await api.delete(f"/v1/deployments/{deployment_id}")).status_code == 204


async def test_another_instance_picks_up_what_a_stopped_one_left(api, hub):
    """The work lives in Postgres: with this instance's loop stopped, a deployment stays in
    `validating`; a runner of another instance (a fresh one on the same database) moves it on,
    checking the model again (here gone from the Hub since the request)."""
    hub.models["acme/fleeting"] = HUB_MODELS["acme/chat"]
    async with runner_paused(api):
        created = await api.post(
            "/v1/deployments", json={"model": "acme/fleeting", "task": "generate"}
        )
        deployment_id = created.json()["deployment_id"]
        del hub.models["acme/fleeting"]
        await asyncio.sleep(1)
        assert (await api.get(f"/v1/deployments/{deployment_id}")).json()["status"] == "validating"
        other = DeploymentRunner(api.app.state.engine, api.app.state.settings)
        await other.run_due()
        await other.aclose()
    deployment = (await api.get(f"/v1/deployments/{deployment_id}")).json()
    assert statuses(deployment) == ["validating", "failed"]
    assert deployment["error"] == "no model 'acme/fleeting' on the Hugging Face Hub"


async def creating_endpoint(
    api, name: str, deployment_id: uuid.UUID | None = None, **values
) -> uuid.UUID:
    """A deployment of the key's tenant written straight into `creating_endpoint`, as a
    validated one is, with `values` that the API's checks would not let through; due now.
    With a `webhook_url`, the tenant has a webhook secret, as the API's create makes one."""
    deployment_id = deployment_id or uuid.uuid4()
    row = {
        "model": "acme/none",
        "task": "generate",
        "gpu_type": "AMPERE_24",
        "workers_min": 1,
        "workers_max": 1,
        "idle_timeout": 5,
        "env": {},
        "status": "creating_endpoint",
        "deadline_at": datetime.now(UTC) + timedelta(minutes=5),
    }
    async with api.app.state.engine.begin() as conn:
        tenant = await conn.scalar(
            select(ApiKey.tenant).where(ApiKey.key_hash == hash_key(api.key))
        )
        await conn.execute(
            insert(Deployment).values(id=deployment_id, tenant=tenant, name=name, **row | values)
        )
        has_secret = await conn.scalar(select(exists().where(WebhookSecret.tenant == tenant)))
    if "webhook_url" in values and not has_secret:  # as the API makes one with the first
        assert (await api.post("/v1/tenant/webhook-secret")).status_code == 201
    api.app.state.deployments.wake()
    return deployment_id


async def test_an_endpoint_runpod_refuses_leaves_nothing_behind(api, control):
    """RunPod refuses the endpoint (here: workers the local RunPod refuses, written past the
    API's own check): nothing is made, and RunPod's detail is the reason."""
    before = control.rest("GET", "/v2/serverless").json(), control.rest("GET", "/v2/templates")
    deployment_id = await creating_endpoint(api, "refused", workers_min=2, workers_max=1)
    deployment = await settled(api, str(deployment_id))
    assert deployment["status"] == "failed"
    assert deployment["error"].startswith("RunPod refused the endpoint: RunPod answered 400")
    assert "workers.min (2) must not exceed workers.max (1)" in deployment["error"]
    after = control.rest("GET", "/v2/serverless").json(), control.rest("GET", "/v2/templates")
    assert after[0] == before[0] and after[1].json() == before[1].json()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://example.com/hook", "webhook_url: must be https"),
        ("https://127.0.0.1/hook", "webhook_url: host '127.0.0.1' resolves to a non-public"),
        ("https://10.1.2.3:8443/hook", "webhook_url: host '10.1.2.3' resolves to a non-public"),
    ],
)
def test_outside_local_mode_a_webhook_is_https_on_a_public_address(url, words):
    with pytest.raises(InvalidInput, match=words):
        check_webhook_url(HttpUrl(url))


async def test_a_tenant_has_at_most_its_cap_of_live_deployments(api):
    async with runner_paused(api):  # they stay validating: live
        made = []
        for n in range(3):  # MAX_LIVE_DEPLOYMENTS in these settings
            body = {"model": "acme/chat", "task": "generate", "name": f"live-{n}"}
            made.append((await api.post("/v1/deployments", json=body)).json()["deployment_id"])
        over = await api.post("/v1/deployments", json={"model": "acme/chat", "task": "generate"})
        error = assert_error(over, 409, "conflict")
        assert error["message"].startswith("the tenant has 3 live deployments, the most allowed")
        for deployment_id in made:
            assert (await api.delete(f"/v1/deployments/{deployment_id}")).status_code == 204
        again = await api.post("/v1/deployments", json={"model": "acme/chat", "task": "generate"})
        assert again.status_code == 202
        deployment_id = again.json()["deployment_id"]
        assert (await api.delete(f"/v1/deployments/{deployment_id}")).status_code == 204


async def test_what_a_stopped_instance_made_at_runpod_is_taken_not_made_again(api, control):
    """An instance made the endpoint, then stopped before noting it: the next one finds it by
    its name and makes no second one."""
    deployment_id = uuid.uuid4()
    name = deployment_name(api.app.state.settings.deployment_name_prefix, deployment_id)
    body = {
        "name": name,
        "type": "QUEUE",
        "image": "tandem/none:0",
        "gpu": {"pools": ["AMPERE_24"]},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }
    made = control.rest("POST", "/v2/serverless", json=body).json()
    await creating_endpoint(api, "half-made", deployment_id)
    deadline = time.monotonic() + 30
    while (deployment := (await api.get(f"/v1/deployments/{deployment_id}")).json())[
        "status"
    ] == "creating_endpoint":
        assert time.monotonic() < deadline, deployment
        await asyncio.sleep(0.2)
    assert deployment["endpoint_id"] == made["id"]
    named = [
        e for e in control.rest("GET", "/v2/serverless").json()["endpoints"] if e["name"] == name
    ]
    assert len(named) == 1
    assert (await api.delete(f"/v1/deployments/{deployment_id}")).status_code == 204
    assert control.rest("GET", f"/v2/serverless/{made['id']}").status_code == 404


async def test_a_deployment_without_gpu_capacity_says_so_at_once(api, control):
    """No pool that holds the model has a GPU free: the deployment fails at once, saying so
    (and its webhook is due), instead of waiting out its deadline."""
    control.emulator.control.set_availability("AMPERE_24", "NONE")
    control.emulator.control.set_availability("ADA_24", "NONE")
    api.app.state.deployments.catalogs._read.clear()  # the catalog is read anew
    try:
        body = {"model": "acme/chat", "task": "generate", "gpu_tier": "24gb"}
        created = await api.post("/v1/deployments", json=body)
        assert created.status_code == 202, created.text
        deployment = await settled(api, created.json()["deployment_id"])
    finally:
        control.emulator.control.set_availability("AMPERE_24", "HIGH")
        control.emulator.control.set_availability("ADA_24", "HIGH")
        api.app.state.deployments.catalogs._read.clear()
    assert deployment["status"] == "failed", deployment
    assert deployment["error"] == (
        "RunPod has no GPU free in the pools that hold the model (AMPERE_24, ADA_24)"
    )
    assert deployment["endpoint_id"] is None


async def test_an_hf_token_is_kept_sealed_and_reaches_the_worker_as_a_runpod_secret(
    api, control, hub
):
    hub.access.add("hf_granted")
    runner, engine = api.app.state.deployments, api.app.state.engine
    body = {"model": "acme/gated-chat", "task": "generate", "hf_token": "hf_granted"}
    async with runner_paused(api):
        created = await api.post("/v1/deployments", json=body)
        assert created.status_code == 202, created.text
        deployment_id = uuid.UUID(created.json()["deployment_id"])
        query = select(Deployment.hf_token).where(Deployment.id == deployment_id)
        async with engine.connect() as conn:
            stored = await conn.scalar(query)
        assert stored.startswith("sealed:") and "hf_granted" not in stored
        await runner.step(deployment_id)  # checked on the Hub with the token: a pool chosen
        await runner.step(deployment_id)  # the endpoint
        deployment = (await api.get(f"/v1/deployments/{deployment_id}")).json()
        endpoint = control.rest("GET", f"/v2/serverless/{deployment['endpoint_id']}").json()
        assert endpoint["env"]["HF_TOKEN"] == (
            f"{{{{ RUNPOD_SECRET_{endpoint['name']}-hf_token }}}}"
        )
        assert "hf_granted" not in json.dumps(endpoint)
        assert control.emulator.control.boot_env(endpoint["env"])["HF_TOKEN"] == "hf_granted"
        async with engine.connect() as conn:
            assert await conn.scalar(query) is None  # kept no longer than needed
        assert (await api.delete(f"/v1/deployments/{deployment_id}")).status_code == 204
    names = [s["name"] for s in control.rest("GET", "/v2/account/secrets").json()["secrets"]]
    assert not [name for name in names if name.startswith(endpoint["name"])]


async def deliver_once(api, deployment_id: uuid.UUID, public_only: bool) -> None:
    """One attempt at the deployment's webhook, as the runner makes it."""
    engine = api.app.state.engine
    async with engine.connect() as conn:
        row = (await conn.execute(select(Deployment).where(Deployment.id == deployment_id))).one()
    keyring = api.app.state.deployments.keyring
    await deployment_webhooks.deliver(engine, keyring, row, 0.01, public_only=public_only)


async def test_the_webhook_secret_is_sealed_and_rotated(api):
    """The secret is kept sealed; a rotation shows a new one once, and signs from then on."""
    engine = api.app.state.engine
    rotated = await api.post("/v1/tenant/webhook-secret")
    assert rotated.status_code == 201, rotated.text
    secret = rotated.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    async with engine.connect() as conn:
        stored = (await conn.execute(select(WebhookSecret.secret))).scalars().all()
    assert stored and all(text.startswith("sealed:") for text in stored)
    assert secret not in "".join(stored)
    again = (await api.post("/v1/tenant/webhook-secret")).json()["webhook_secret"]
    assert again != secret
    server, hook = receiver(200)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    async with runner_paused(api):
        deployment_id = await creating_endpoint(
            api, "rotated", status="failed", error="no capacity", webhook_url=url
        )
        await deliver_once(api, deployment_id, public_only=False)
    [(headers, sent)] = hook.received
    assert signed_by(again, headers, sent) and not signed_by(secret, headers, sent)
    server.shutdown()


async def test_deployments_in_the_stacks_account_are_for_allowed_tenants(api):
    settings = api.app.state.settings
    api.app.state.settings = settings.model_copy(update={"stack_account_tenants": ["someone-else"]})
    body = {"model": "acme/chat", "task": "generate"}
    try:
        response = await api.post("/v1/deployments", json=body)
    finally:
        api.app.state.settings = settings
    refused = assert_error(response, 403, "forbidden")
    assert "register your own RunPod key" in refused["message"]
    assert "STACK_ACCOUNT_TENANTS" in refused["message"]


def assert_no_stack_secret(control, endpoint: dict) -> None:
    """Nothing the deployment's account shows (its endpoint, templates, secrets' names) holds
    the stack's signing secret or a key derived from it for the stack's own use."""
    stack_keys = [HMAC_SECRET, *(keys.derive(HMAC_SECRET, p) for p in STACK_PURPOSES)]
    shown = json.dumps(
        [
            endpoint,
            control.rest("GET", "/v2/templates").json(),
            control.rest("GET", "/v2/account/secrets").json(),
        ]
    )
    assert not [key for key in stack_keys if key in shown]
    booted = control.emulator.control.boot_env(endpoint["env"])
    assert not [key for key in stack_keys if key in json.dumps(booted)]


STACK_PURPOSES = (keys.WORKERS, keys.JOB_WEBHOOKS, keys.SIGNED_URLS)


def signed(message: dict, key: str, signature: str | bytes | None = None) -> dict:
    """A callback as a deployment's worker sends one (gpu_worker/common/ready.py)."""
    body, ts = json.dumps(message).encode(), int(time.time())
    signature = signature or sign(key, body, ts)
    headers = {"X-Tandem-Timestamp": str(ts), "X-Tandem-Signature": signature}
    return {"content": body, "headers": headers}


async def test_the_workers_callback_takes_only_its_deployments_key(api):
    """Only the key derived for that deployment signs its callbacks: not the stack's signing
    secret, not another deployment's key, not a non-ASCII signature (401, not a 500)."""
    async with runner_paused(api):
        deployment_id = await creating_endpoint(
            api, "called-back", status="downloading_model", endpoint_id="ep-called-back"
        )
        message = {"endpoint_id": "ep-called-back", "model": "m", "status": "loading"}
        own = keys.deployment_key(HMAC_SECRET, deployment_id)
        for key, signature in (
            (HMAC_SECRET, None),
            (keys.deployment_key(HMAC_SECRET, uuid.uuid4()), None),
            (keys.derive(HMAC_SECRET, keys.WORKERS), None),
            (own, ("é" * 32).encode()),  # UTF-8 bytes: non-ASCII as the API reads them
        ):
            refused = await api.client.post(READY_PATH, **signed(message, key, signature))
            assert_error(refused, 401, "unauthorized")
        unknown = signed(message | {"endpoint_id": "no-such-endpoint"}, own)
        assert_error(await api.client.post(READY_PATH, **unknown), 401, "unauthorized")
        taken = await api.client.post(READY_PATH, **signed(message, own))
        assert taken.json() == {"ok": True, "changed": True}
        unsigned = await api.client.post(READY_PATH, content=json.dumps(message))
        assert_error(unsigned, 422, "validation_error")
        shapeless = await api.client.post(READY_PATH, **signed({"status": "ready"}, own))
        error = assert_error(shapeless, 422, "validation_error")
        assert error["message"] == "body: expected {endpoint_id, model, status}"
        unknown = await api.client.post(READY_PATH, **signed(message | {"status": "warm"}, own))
        error = assert_error(unknown, 422, "validation_error")
        assert error["message"] == "status: expected one of loading, ready, failed"
        await api.delete(f"/v1/deployments/{deployment_id}")


async def test_outside_local_mode_a_webhook_is_posted_to_public_addresses_only(api):
    """Delivery checks the address again (a host whose DNS answer turned private since the
    deployment was made is not posted to): each attempt says why; the last ends
    `webhook_failed`."""
    server, hook = receiver(200)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    async with runner_paused(api):
        deployment_id = await creating_endpoint(
            api, "rebound", status="failed", error="no capacity", webhook_url=url
        )
        for _ in range(3):
            await deliver_once(api, deployment_id, public_only=True)
    deployment = (await api.get(f"/v1/deployments/{deployment_id}")).json()
    refused = "refused: host '127.0.0.1' resolves to a non-public address"
    assert [d["error"] for d in deployment["deliveries"]] == [refused] * 3
    assert deployment["status"] == "webhook_failed" and hook.received == []
    server.shutdown()


async def test_a_lost_callback_is_made_up_for_by_the_endpoints_health(api):
    """A worker that serves but whose callback never arrived (here: a worker that sends none)
    is found serving in the endpoint's /health: the deployment is ready, saying so."""
    engine = api.app.state.engine
    silent = api.app.state.settings.model_copy(update={"deployment_image": CONTROLLED_IMAGE})
    async with runner_paused(api):
        deployment_id = await creating_endpoint(api, "silent")
        other = DeploymentRunner(engine, silent)
        try:
            deadline = time.monotonic() + 60
            while (deployment := (await api.get(f"/v1/deployments/{deployment_id}")).json())[
                "status"
            ] != "ready":
                assert time.monotonic() < deadline, deployment
                async with engine.begin() as conn:  # due now, not in HEALTH_EVERY_S
                    await conn.execute(due(deployment_id, datetime.now(UTC)))
                await other.run_due()
                await asyncio.sleep(0.5)
        finally:
            await other.aclose()
        assert statuses(deployment)[-2:] == ["downloading_model", "ready"]
        assert deployment["events"][-1]["detail"] == (
            "RunPod reports a worker serving it (its callback did not arrive)"
        )
        assert (await api.delete(f"/v1/deployments/{deployment_id}")).status_code == 204
