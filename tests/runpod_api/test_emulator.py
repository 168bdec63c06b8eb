"""The RunPod emulator seen through RunPod's own Python client (`runpod.Endpoint`) and raw HTTP:
the public job API of shared/runpod/README.md, served by worker processes under the SDK."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import runpod

from tests.conftest import REPO_ROOT


def chat(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture
def sdk(emulator, monkeypatch):
    """runpod's client pointed at the emulator."""
    monkeypatch.setattr(runpod, "api_key", emulator.api_key)
    monkeypatch.setattr(runpod, "endpoint_url_base", emulator.base_url)
    return runpod


def test_runpod_client_runs_jobs_through_the_env_variable(emulator):
    script = (
        "import runpod\n"
        f"runpod.api_key = {emulator.api_key!r}\n"
        "job = {'messages': [{'role': 'user', 'content': 'env'}]}\n"
        "out = runpod.Endpoint('ctl').run_sync(job)\n"
        "print(out[-1]['raw_text'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "RUNPOD_ENDPOINT_BASE_URL": emulator.base_url},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "echo: env"


def test_run_status_output(sdk):
    job = sdk.Endpoint("ctl").run(chat("sleep: 0.5"))
    assert job.status() in ("IN_QUEUE", "IN_PROGRESS")
    assert job.output(timeout=10)[-1]["raw_text"] == "slept 0.5"
    assert job.status() == "COMPLETED"


def test_stream_through_the_sdk(sdk):
    job = sdk.Endpoint("ctl").run(chat("stream: 3"))
    chunks = list(job.stream())
    assert chunks[:3] == [{"delta": "t0 "}, {"delta": "t1 "}, {"delta": "t2 "}]
    assert chunks[-1]["raw_text"] == "streamed"


def test_cancel_stops_the_job_on_the_worker(sdk, emulator):
    job = sdk.Endpoint("ctl").run(chat("sleep: 30"))
    time.sleep(0.5)
    assert job.status() == "IN_PROGRESS"
    assert job.cancel()["status"] == "CANCELLED"
    health = httpx.get(f"{emulator.base_url}/ctl/health", headers=emulator.headers).json()
    assert health["jobs"]["inProgress"] == 0
    # The worker dropped the job and takes the next one at once.
    assert sdk.Endpoint("ctl").run_sync(chat("next"), timeout=10)[-1]["raw_text"] == "echo: next"


def test_a_job_whose_worker_dies_runs_again_on_its_replacement(sdk):
    endpoint = sdk.Endpoint("ctl")
    pid = int(endpoint.run_sync(chat("pid:"), timeout=10)[-1]["raw_text"])
    job = endpoint.run(chat("sleep: 1"))
    deadline = time.monotonic() + 10
    while job.status() != "IN_PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # as an out-of-memory kill of its container
    assert job.output(timeout=60)[-1]["raw_text"] == "slept 1"
    assert int(endpoint.run_sync(chat("pid:"), timeout=10)[-1]["raw_text"]) != pid


def test_failed_job_and_retry(sdk, emulator):
    job = sdk.Endpoint("ctl").run(chat("fail: no GPU"))
    deadline = time.monotonic() + 10
    while job.status() != "FAILED" and time.monotonic() < deadline:
        time.sleep(0.1)
    status = httpx.get(
        f"{emulator.base_url}/ctl/status/{job.job_id}", headers=emulator.headers
    ).json()
    assert status["status"] == "FAILED"
    assert status["error"] == "no GPU"
    retried = httpx.post(f"{emulator.base_url}/ctl/retry/{job.job_id}", headers=emulator.headers)
    assert retried.json()["status"] == "IN_QUEUE"


def test_retry_of_a_completed_job_is_refused(emulator):
    client = httpx.Client(base_url=emulator.base_url, headers=emulator.headers, timeout=30)
    done = client.post("/llm/runsync", json={"input": chat("x")}).json()
    assert done["status"] == "COMPLETED"
    assert client.post(f"/llm/retry/{done['id']}").status_code == 400


def test_health_and_purge_queue(sdk, emulator):
    endpoint = sdk.Endpoint("ctl")
    blockers = [endpoint.run(chat("sleep: 2")) for _ in range(4)]  # MAX_CONCURRENCY=4
    deadline = time.monotonic() + 10
    while endpoint.health()["jobs"]["inProgress"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    queued = [endpoint.run(chat("sleep: 2")) for _ in range(3)]
    health = endpoint.health()
    assert health["jobs"]["inQueue"] == 3
    assert health["workers"]["running"] == 1
    assert endpoint.purge_queue()["removed"] == 3
    assert endpoint.health()["jobs"]["inQueue"] == 0
    assert all(job.output(timeout=10) for job in blockers)
    assert queued


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/llm/run", {"no_input": 1}, 400),
        ("POST", "/llm/run", None, 400),
        ("GET", "/llm/status/unknown-id", None, 404),
        ("GET", "/llm/stream/unknown-id", None, 404),
        ("POST", "/llm/cancel/unknown-id", None, 404),
        ("POST", "/nope/run", {"input": {}}, 404),
    ],
)
def test_bad_requests_get_runpod_style_errors(emulator, method, path, body, status):
    response = httpx.request(
        method, emulator.base_url + path, json=body, headers=emulator.headers, timeout=10
    )
    assert response.status_code == status
    assert "error" in response.json()


def test_public_api_needs_the_key(emulator):
    response = httpx.post(f"{emulator.base_url}/llm/run", json={"input": {}})
    assert response.status_code == 401
