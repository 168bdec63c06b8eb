"""The post-deploy check against the API served over HTTP (local workers) and the local
RunPod's endpoint health, rollouts and workers: each step, and each way it fails."""

import asyncio
import time

import pytest

from stacks.__main__ import main
from stacks.postdeploy import CheckFailed, check
from tests.conftest import free_port
from tests.runpod_control import CONTROLLED_IMAGE, ControlPlane

BROKEN_IMAGE = "tandem/broken:1"  # its worker exits as it starts: RunPod restarts it, in vain


async def run_check(served_api, emulator, **overrides):
    """The check of the served API and `emulator`'s endpoints (the conftest's fixed ones, or
    a ControlPlane's)."""
    jobs = getattr(emulator, "jobs_url", None) or emulator.base_url
    values = {
        "api_url": served_api.app.state.settings.public_url,
        "api_key": served_api.key,
        "endpoint_ids": ["llm", "embed"],
        "runpod_api_base": jobs,
        "runpod_rest_api": jobs.removesuffix("/v2"),
        "runpod_api_key": emulator.api_key,
        "timeout_s": 60,
        "every_s": 0.1,
    } | overrides
    # The check is synchronous (a CI step); the served API needs this loop to answer it.
    await asyncio.to_thread(check, **values)


async def test_a_healthy_deployment_passes(served_api, emulator, capsys):
    await run_check(served_api, emulator)
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == [
        "ok: API /readiness",
        "ok: GPU endpoint llm /health",
        "ok: GPU endpoint llm rollout",
        "ok: GPU endpoint embed /health",
        "ok: GPU endpoint embed rollout",
    ]
    assert out[5].startswith("ok: smoke chat answered ")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (
            {"endpoint_ids": ["missing"], "timeout_s": 1},
            "GPU endpoint missing /health not ready in time: HTTP 404",
        ),
        (
            {"runpod_api_key": "wrong", "timeout_s": 1},
            "GPU endpoint llm /health not ready in time: HTTP 401",
        ),
        ({"api_key": "tdm_wrong"}, "smoke chat: HTTP 401"),
        (
            {"api_url": f"http://127.0.0.1:{free_port()}", "timeout_s": 1},
            "API /readiness not ready in time: ConnectError",
        ),
    ],
)
async def test_each_failure_names_its_step(served_api, emulator, overrides, words):
    with pytest.raises(CheckFailed, match=words):
        await run_check(served_api, emulator, **overrides)


def test_the_command_needs_its_keys(monkeypatch, capsys):
    monkeypatch.delenv("TANDEM_API_KEY", raising=False)
    monkeypatch.setenv("RUNPOD_API_KEY", "k")
    assert main(["check", "--api-url", "http://127.0.0.1:1"]) == 1
    assert capsys.readouterr().err == "error: the post-deploy check needs TANDEM_API_KEY\n"


@pytest.fixture(scope="module")
def runpod():
    images = {BROKEN_IMAGE: "tests.workers.no_such_module"}
    with ControlPlane("rp-check-key", images=images) as plane:
        yield plane
    assert plane.violations == []


def made(runpod, image: str, pool: str = "ADA_24", **body) -> str:
    request = {
        "name": "checked",
        "type": "QUEUE",
        "image": image,
        "gpu": {"pools": [pool]},
        "workers": {"min": 1, "max": 1},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    } | body
    return runpod.rest("POST", "/v2/serverless", json=request).json()["id"]


async def test_the_check_waits_for_a_rollout_and_names_throttled_workers(
    served_api, runpod, capsys
):
    endpoint = made(runpod, CONTROLLED_IMAGE)
    deadline = time.monotonic() + 30
    while runpod.rest("GET", f"/v2/serverless/{endpoint}/workers").json()["summary"]["idle"] < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    runpod.rest("PATCH", f"/v2/serverless/{endpoint}", json={"env": {"RELEASE": "2"}})
    runpod.emulator.control.set_availability("AMPERE_16", "NONE")
    throttled = made(runpod, CONTROLLED_IMAGE, pool="AMPERE_16")
    try:
        await run_check(served_api, runpod, endpoint_ids=[endpoint, throttled])
    finally:
        runpod.emulator.control.set_availability("AMPERE_16", "HIGH")
    out = capsys.readouterr().out.splitlines()
    assert f"ok: GPU endpoint {endpoint} rollout" in out  # once the old release's worker went
    releases = runpod.rest("GET", f"/v2/serverless/{endpoint}/releases").json()
    assert releases["endpointVersion"] == 2 and not releases["rollout"]["inProgress"]
    assert (
        f"note: GPU endpoint {throttled}: throttled (no GPU free): {throttled}-throttled-0" in out
    )
    for endpoint_id in (endpoint, throttled):
        runpod.rest("DELETE", f"/v2/serverless/{endpoint_id}")


async def test_unhealthy_workers_fail_the_check(served_api, runpod):
    broken = made(runpod, BROKEN_IMAGE)
    deadline = time.monotonic() + 30
    path = f"/v2/serverless/{broken}/workers"
    while runpod.rest("GET", path).json()["summary"]["unhealthy"] < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    with pytest.raises(CheckFailed, match=f"GPU endpoint {broken}: unhealthy workers: {broken}-"):
        await run_check(served_api, runpod, endpoint_ids=[broken])
    runpod.rest("DELETE", f"/v2/serverless/{broken}")
