"""`python -m stacks logs`: a stack's endpoint's worker logs from the local RunPod's REST API
v2, by worker type (the stack's output) or id, one worker or all, and its refusals."""

import time

import pytest

from stacks.__main__ import main
from tests.runpod_control import CONTROLLED_IMAGE, ControlPlane

KEY = "rp-logs-key"


class Outputs:
    """The one thing `logs` asks a stack: its outputs."""

    def __init__(self, outputs: dict) -> None:
        self._outputs = outputs

    def outputs(self, stack: str) -> dict:
        assert stack == "dev"
        return self._outputs


@pytest.fixture(scope="module")
def runpod():
    with ControlPlane(KEY) as plane:
        yield plane
    assert plane.violations == []


@pytest.fixture
def environment(runpod, monkeypatch, tmp_path):
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "unused")
    monkeypatch.setenv("RUNPOD_API_KEY", KEY)
    monkeypatch.setenv("RUNPOD_REST_API", runpod.url)


def test_a_stacks_worker_logs_by_worker_type(runpod, environment, capsys):
    body = {
        "name": "logged",
        "type": "QUEUE",
        "image": CONTROLLED_IMAGE,
        "gpu": {"pools": ["ADA_24"]},
        "workers": {"min": 1, "max": 1},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }
    endpoint = runpod.rest("POST", "/v2/serverless", json=body).json()["id"]
    deadline = time.monotonic() + 30
    while not (workers := runpod.rest("GET", f"/v2/serverless/{endpoint}/workers").json())[
        "summary"
    ]["idle"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    worker = workers["workers"][0]["id"]
    stack = Outputs({"llm_endpoint_id": endpoint})
    assert main(["logs", "dev", "llm"], workspace=lambda _dir: stack) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith(f"{worker} ") for line in lines)
    assert any("Starting Serverless Worker" in line for line in lines)

    assert main(["logs", "dev", endpoint, "--worker", "nope"], workspace=lambda _d: stack) == 1
    assert "RunPod answered 404" in capsys.readouterr().err
    runpod.rest("DELETE", f"/v2/serverless/{endpoint}")


def test_logs_need_a_runpod_key(environment, monkeypatch, capsys):
    monkeypatch.delenv("RUNPOD_API_KEY")
    assert main(["logs", "dev", "llm"], workspace=lambda _dir: Outputs({})) == 1
    assert capsys.readouterr().err == "error: worker logs need RUNPOD_API_KEY\n"
