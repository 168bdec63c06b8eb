"""A crash loop never drains a balance: a deployment whose worker exits at every start (as one
whose model does not load) is stopped after DEPLOYMENT_MAX_FAILED_STARTS failed starts, its
endpoint scaled to no workers and removed, and it fails with the worker's last log lines as
its reason, which its signed webhook carries. Through the local RunPod, which restarts the
worker as RunPod does and lists it UNHEALTHY."""

import asyncio
import json
import time

import pytest

from tests.conftest import HMAC_SECRET, controlled_backend, make_settings, serve_api
from tests.hf_hub import FakeHub
from tests.net import free_port, receiver
from tests.runpod_control import ControlPlane

KEY = "rp-crash-loop-key"
IMAGE = "tandem/crashing:test"


@pytest.fixture(scope="module")
def control():
    with ControlPlane(KEY, images={IMAGE: "tests.workers.crashing"}) as plane:
        yield plane
    assert plane.violations == []


@pytest.fixture(scope="module")
def hub():
    model = {"config": {"architectures": ["LlamaForCausalLM"]}, "files": {"model.bin": 1_000}}
    with FakeHub({"acme/broken-chat": model}) as server:
        yield server


@pytest.fixture(scope="module")
async def api(database_url, control, hub):
    settings = make_settings(
        database_url,
        runpod_api_key=KEY,
        runpod_rest_api=control.url,
        runpod_api_base=control.jobs_url,
        deployment_image=IMAGE,
        signing_secret=HMAC_SECRET,
        public_url=f"http://127.0.0.1:{free_port()}",
        hf_endpoint=hub.url,
        job_poll_seconds=0.2,
        deployment_max_failed_starts=3,
    )
    async for served in serve_api(settings, controlled_backend()):
        yield served


async def test_workers_that_keep_failing_to_start_are_stopped(api, control):
    server, hook = receiver(200)
    body = {
        "model": "acme/broken-chat",
        "workers_min": 1,
        "workers_max": 1,
        "webhook_url": f"http://127.0.0.1:{server.server_address[1]}/hook",
    }
    created = await api.post("/v1/deployments", json=body)
    assert created.status_code == 202, created.text
    deployment_id = created.json()["deployment_id"]
    deadline = time.monotonic() + 60
    while (deployment := (await api.get(f"/v1/deployments/{deployment_id}")).json())[
        "status"
    ] != "failed" or not deployment["deliveries"]:
        assert time.monotonic() < deadline, json.dumps(deployment)
        await asyncio.sleep(0.3)
    server.shutdown()

    error = deployment["error"]
    assert error.startswith("its workers failed to start 3 times within 900 s: stopped so")
    assert "CUDA error: no kernel image is available" in error  # the worker's last lines
    # Its endpoint is gone: no worker is started (or billed) again.
    assert control.rest("GET", f"/v2/serverless/{deployment['endpoint_id']}").status_code == 404
    [(_headers, sent)] = hook.received
    notified = json.loads(sent)
    assert (notified["status"], notified["error"]) == ("failed", error)
