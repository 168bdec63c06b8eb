"""The post-deploy check against the API served over HTTP (local workers) and the RunPod
emulator's endpoint health: each step, and each way it fails."""

import asyncio

import pytest

from stacks.__main__ import main
from stacks.postdeploy import CheckFailed, check
from tests.conftest import free_port


async def run_check(served_api, emulator, **overrides):
    values = {
        "api_url": served_api.app.state.settings.public_url,
        "api_key": served_api.key,
        "endpoint_ids": ["llm", "embed"],
        "runpod_api_base": emulator.base_url,
        "runpod_api_key": emulator.api_key,
        "timeout_s": 60,
        "every_s": 0.1,
    } | overrides
    # The check is synchronous (a CI step); the served API needs this loop to answer it.
    await asyncio.to_thread(check, **values)


async def test_a_healthy_deployment_passes(served_api, emulator, capsys):
    await run_check(served_api, emulator)
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        "ok: API /readiness",
        "ok: GPU endpoint llm /health",
        "ok: GPU endpoint embed /health",
    ]
    assert out[3].startswith("ok: smoke chat answered ")


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
