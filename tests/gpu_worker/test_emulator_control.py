"""The emulator's RunPod control plane (REST API v1) and the workers of the endpoints made
through it, every request and response checked against RunPod's spec (tests/runpod_control.py):
workersMin keeps workers warm, workersMax caps them, idleTimeout stops idle ones, a template's
env reaches its workers, an unknown image never becomes ready, an image of a private registry is
pulled only with its credential, a RunPod secret reaches workers only when they boot, and
RunPod's rules hold."""

import time

import httpx
import pytest

from tests.runpod_control import (
    CONTROLLED_IMAGE,
    PRIVATE_IMAGE,
    PRIVATE_REGISTRY,
    ControlPlane,
)

KEY = "rp-control-key"


@pytest.fixture(scope="module")
def runpod():
    with ControlPlane(KEY) as control:
        yield control
    assert control.violations == []


def template(runpod, image=CONTROLLED_IMAGE, env=None, **fields) -> str:
    body = {"name": "t", "imageName": image, "isServerless": True, "env": env or {}, **fields}
    response = runpod.rest("POST", "/templates", json=body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def endpoint(runpod, template_id: str, **fields) -> str:
    body = {"templateId": template_id, "name": "e", "gpuTypeIds": ["NVIDIA L4"], **fields}
    response = runpod.rest("POST", "/endpoints", json=body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def delete(runpod, endpoint_id: str) -> None:
    runpod.rest("PATCH", f"/endpoints/{endpoint_id}", json={"workersMin": 0, "workersMax": 0})
    assert runpod.rest("DELETE", f"/endpoints/{endpoint_id}").status_code == 204


def jobs(runpod, endpoint_id: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {runpod.api_key}"}
    url = f"{runpod.jobs_url}/{endpoint_id}/{path}"
    return httpx.request(kwargs.pop("method", "GET"), url, headers=headers, timeout=60, **kwargs)


def workers_when(runpod, endpoint_id: str, ready, timeout_s: float = 30) -> dict:
    """The endpoint's /health workers once `ready(workers)` holds (or fail after the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        workers = jobs(runpod, endpoint_id, "health").json()["workers"]
        if ready(workers):
            return workers
        assert time.monotonic() < deadline, workers
        time.sleep(0.2)


def test_workers_min_max_and_idle_timeout(runpod):
    one_job_each = template(runpod, env={"MAX_CONCURRENCY": "1"})
    endpoint_id = endpoint(runpod, one_job_each, workersMin=1, workersMax=2, idleTimeout=1)
    workers_when(runpod, endpoint_id, lambda w: w["idle"] == 1)  # warm before any job
    ids = [
        jobs(runpod, endpoint_id, "run", method="POST", json={"input": {"command": "sleep: 3"}})
        for _ in range(3)
    ]
    busiest = workers_when(runpod, endpoint_id, lambda w: w["running"] == 2)
    assert busiest["running"] + busiest["idle"] + busiest["initializing"] == 2  # capped at max
    for job in ids:
        status = jobs(runpod, endpoint_id, f"status/{job.json()['id']}").json()
        assert status["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    workers_when(runpod, endpoint_id, lambda w: w == {"idle": 1, "running": 0, "initializing": 0})
    runpod.rest("PATCH", f"/endpoints/{endpoint_id}", json={"workersMin": 0})
    workers_when(runpod, endpoint_id, lambda w: w == {"idle": 0, "running": 0, "initializing": 0})
    answer = jobs(
        runpod, endpoint_id, "runsync", method="POST", json={"input": {"command": "hi"}}
    ).json()
    assert answer["output"][-1]["raw_text"] == "echo: hi"  # scaled up from zero
    delete(runpod, endpoint_id)


def test_the_templates_env_reaches_its_workers_and_a_new_release_replaces_them(runpod):
    template_id = template(runpod, env={"GREETING": "hello"})
    endpoint_id = endpoint(runpod, template_id, workersMax=1)

    def greeting() -> str:
        body = {"input": {"command": "getenv: GREETING"}}
        return jobs(runpod, endpoint_id, "runsync", method="POST", json=body).json()["output"][-1][
            "raw_text"
        ]

    assert greeting() == "hello"
    runpod.rest("PATCH", f"/templates/{template_id}", json={"env": {"GREETING": "bonjour"}})
    assert greeting() == "bonjour"
    delete(runpod, endpoint_id)


def test_an_unknown_image_never_becomes_ready(runpod):
    endpoint_id = endpoint(runpod, template(runpod, image="nobody/unknown:1"), workersMin=1)
    workers = workers_when(runpod, endpoint_id, lambda w: w["initializing"] == 1)
    assert workers["idle"] == workers["running"] == 0
    job = jobs(runpod, endpoint_id, "run", method="POST", json={"input": {"command": "hi"}})
    time.sleep(1)
    assert jobs(runpod, endpoint_id, f"status/{job.json()['id']}").json()["status"] == "IN_QUEUE"
    delete(runpod, endpoint_id)


def registry_auth(runpod, name: str, password: str) -> str:
    body = {"name": name, "username": PRIVATE_REGISTRY[0], "password": password}
    response = runpod.rest("POST", "/containerregistryauth", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": response.json()["id"], "name": name}  # no credentials
    return response.json()["id"]


def test_a_private_image_is_pulled_only_with_its_registry_credential(runpod):
    right = registry_auth(runpod, "right", PRIVATE_REGISTRY[1])
    wrong = registry_auth(runpod, "wrong", "bm90IHRoZSBrZXk=")
    pulled = endpoint(runpod, template(runpod, PRIVATE_IMAGE, containerRegistryAuthId=right))
    answer = jobs(runpod, pulled, "runsync", method="POST", json={"input": {"command": "hi"}})
    assert answer.json()["status"] == "COMPLETED", answer.text
    for auth in ({}, {"containerRegistryAuthId": wrong}):
        refused = endpoint(runpod, template(runpod, PRIVATE_IMAGE, **auth), workersMin=1)
        workers = workers_when(runpod, refused, lambda w: w["initializing"] == 1)
        assert workers["idle"] == workers["running"] == 0
        delete(runpod, refused)
    delete(runpod, pulled)

    listed = runpod.rest("GET", "/containerregistryauth").json()
    assert {"id": right, "name": "right"} in listed
    taken = runpod.rest(
        "POST", "/containerregistryauth", json={"name": "right", "username": "u", "password": "p"}
    )
    assert taken.status_code == 400 and "exists" in taken.json()["error"]
    unknown = runpod.rest(
        "POST",
        "/templates",
        json={"name": "t", "imageName": "i", "containerRegistryAuthId": "nope"},
    )
    assert unknown.status_code == 400 and "containerRegistryAuthId" in unknown.json()["error"]
    for auth_id in (right, wrong):
        assert runpod.rest("DELETE", f"/containerregistryauth/{auth_id}").status_code == 204
    assert runpod.rest("GET", f"/containerregistryauth/{right}").status_code == 404
    assert runpod.rest("DELETE", f"/containerregistryauth/{right}").status_code == 400


def test_a_secret_reference_is_filled_in_when_a_worker_boots(runpod):
    secrets_url = f"{runpod.v2_url}/account/secrets"
    made = runpod.rest("POST", secrets_url, json={"name": "greeting", "value": "hello"})
    assert made.status_code == 201 and "value" not in made.json()
    template_id = template(runpod, env={"GREETING": "{{ RUNPOD_SECRET_greeting }}", "N": "1"})
    endpoint_id = endpoint(runpod, template_id)

    def greeting() -> str:
        body = {"input": {"command": "getenv: GREETING"}}
        return jobs(runpod, endpoint_id, "runsync", method="POST", json=body).json()["output"][-1][
            "raw_text"
        ]

    assert greeting() == "hello"
    assert runpod.rest("GET", f"/templates/{template_id}").json()["env"]["GREETING"] == (
        "{{ RUNPOD_SECRET_greeting }}"
    )  # RunPod shows the reference, never the value
    secret_id = made.json()["id"]
    runpod.rest("PATCH", f"{secrets_url}/{secret_id}", json={"value": "bonjour"})
    assert greeting() == "hello"  # a running worker keeps the value it booted with
    runpod.rest(
        "PATCH",
        f"/templates/{template_id}",
        json={"env": {"GREETING": "{{ RUNPOD_SECRET_greeting }}", "N": "2"}},
    )
    assert greeting() == "bonjour"  # a new release: new workers, the new value
    delete(runpod, endpoint_id)

    taken = runpod.rest("POST", secrets_url, json={"name": "GREETING", "value": "x"})
    assert taken.status_code == 409  # names are unique, whatever their case
    assert taken.headers["content-type"] == "application/problem+json"
    assert taken.json() == {"title": "Conflict", "status": 409, "detail": taken.json()["detail"]}
    reserved = runpod.rest("POST", secrets_url, json={"name": "RunPod_x", "value": "x"})
    assert reserved.status_code == 422 and "reserved" in reserved.json()["detail"]
    listed = runpod.rest("GET", secrets_url, params={"name": "greeting"}).json()["secrets"]
    assert [s["id"] for s in listed] == [secret_id]
    assert runpod.rest("DELETE", f"{secrets_url}/{secret_id}").status_code == 204
    assert runpod.rest("GET", f"{secrets_url}/{secret_id}").status_code == 404


def test_runpods_rules(runpod):
    template_id = template(runpod)
    endpoint_id = endpoint(runpod, template_id, workersMax=1, flashboot=True)
    live = runpod.rest("GET", f"/endpoints/{endpoint_id}").json()
    assert live["name"] == "e -fb" and "flashboot" not in live

    refused = runpod.rest("DELETE", f"/endpoints/{endpoint_id}")
    assert refused.status_code == 400 and "min and max workers to 0" in refused.json()["error"]
    in_use = runpod.rest("DELETE", f"/templates/{template_id}")
    assert in_use.status_code == 400 and endpoint_id in in_use.json()["error"]
    delete(runpod, endpoint_id)
    assert runpod.rest("DELETE", f"/templates/{template_id}").status_code == 204

    assert runpod.rest("GET", f"/endpoints/{endpoint_id}").status_code == 404
    assert (
        runpod.rest("PATCH", f"/endpoints/{endpoint_id}", json={"workersMax": 1}).status_code == 400
    )
    assert runpod.rest("DELETE", f"/endpoints/{endpoint_id}").status_code == 400
    assert runpod.rest("POST", "/endpoints", json={"templateId": "nope"}).status_code == 400
    low_high = runpod.rest(
        "POST",
        "/endpoints",
        json={"templateId": template(runpod), "workersMin": 3, "workersMax": 1},
    )
    assert low_high.status_code == 400 and "workersMin" in low_high.json()["error"]
    unauthorized = httpx.get(f"{runpod.url}/endpoints", headers={"Authorization": "Bearer x"})
    assert unauthorized.status_code == 401
