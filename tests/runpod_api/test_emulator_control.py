"""The local RunPod's control plane (REST API v2) and the workers of the endpoints made through
it, every answer checked against RunPod's spec (tests/runpod_control.py): it refuses what
RunPod refuses by the spec (unknown fields by name, wrong types and enums), workers.min keeps
workers warm, workers.max caps them, idleTimeout stops idle ones, the endpoint's env reaches
its workers and nothing of this process's does, a container change is a release that rolls the
workers, an unknown image never becomes ready, a pool without capacity leaves workers
unplaced, a private image is pulled only with its credential, a secret reaches workers when
they boot, the workers are listed, logged and billed, and RunPod's rules hold."""

import os
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
QUEUE = {"type": "QUEUE", "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4}}


@pytest.fixture(scope="module")
def runpod():
    with ControlPlane(KEY) as control:
        yield control
    assert control.violations == []


def endpoint(runpod, image=CONTROLLED_IMAGE, env=None, **fields) -> str:
    body = {"name": "e", "image": image, "env": env or {}, "gpu": {"pools": ["ADA_24"]}}
    response = runpod.rest("POST", "/v2/serverless", json={**QUEUE, **body, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def template(runpod, image=CONTROLLED_IMAGE, env=None, **fields) -> str:
    body = {"name": "t", "image": image, "serverless": True, "env": env or {}, **fields}
    response = runpod.rest("POST", "/v2/templates", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def delete(runpod, endpoint_id: str) -> None:
    assert runpod.rest("DELETE", f"/v2/serverless/{endpoint_id}").status_code == 204


def jobs(runpod, endpoint_id: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {runpod.api_key}"}
    url = f"{runpod.jobs_url}/{endpoint_id}/{path}"
    return httpx.request(kwargs.pop("method", "GET"), url, headers=headers, timeout=60, **kwargs)


def ask(runpod, endpoint_id: str, command: str) -> str:
    body = {"input": {"command": command}}
    answer = jobs(runpod, endpoint_id, "runsync", method="POST", json=body).json()
    return answer["output"][-1]["raw_text"]


def workers_when(runpod, endpoint_id: str, ready, timeout_s: float = 30) -> dict:
    """The endpoint's worker summary (/v2/serverless/{id}/workers) once `ready(summary)`."""
    deadline = time.monotonic() + timeout_s
    while True:
        listing = runpod.rest("GET", f"/v2/serverless/{endpoint_id}/workers").json()
        if ready(listing["summary"]):
            return listing
        assert time.monotonic() < deadline, listing
        time.sleep(0.2)


def test_a_body_off_the_spec_is_refused_naming_the_field(runpod):
    base = {**QUEUE, "name": "e", "image": CONTROLLED_IMAGE, "gpu": {"pools": ["ADA_24"]}}
    cases = [
        ({"gpuTypeIds": ["NVIDIA L4"]}, 400, "unknown field gpuTypeIds"),  # v1's name
        ({"gpu": {"pools": ["ADA_24"], "gpuCount": 1}}, 400, "unknown field gpu.gpuCount"),
        ({"flashboot": True}, 422, "flashboot: True is not of type 'string'"),
        ({"flashboot": "ON"}, 422, "flashboot: 'ON' is not one of"),
        ({"workers": {"min": 1, "max": 2, "idleTimeout": 0}}, 422, "workers.idleTimeout"),
        ({"scaling": {"type": "QUEUE_DELAY"}}, 400, "'queueDelay' is a required property"),
    ]
    for change, status, detail in cases:
        refused = runpod.rest("POST", "/v2/serverless", json=base | change)
        assert refused.status_code == status, (change, refused.text)
        problem = refused.json()
        assert refused.headers["content-type"] == "application/problem+json"
        assert detail in problem["detail"] and problem["errors"], problem
    no_image = {key: value for key, value in base.items() if key != "image"}
    assert runpod.rest("POST", "/v2/serverless", json=no_image).status_code == 400
    unknown_pool = runpod.rest("POST", "/v2/serverless", json=base | {"gpu": {"pools": ["X"]}})
    assert unknown_pool.status_code == 400 and "'X' is not a serverless pool" in unknown_pool.text
    assert runpod.rest("GET", "/v2/serverless").json()["endpoints"] == []  # nothing half-made
    v1 = runpod.rest("POST", "/v1/endpoints", json={"templateId": "t"})
    assert v1.status_code == 404  # REST API v1 is retired


def test_workers_min_max_and_idle_timeout(runpod):
    endpoint_id = endpoint(
        runpod,
        env={"MAX_CONCURRENCY": "1"},
        workers={"min": 1, "max": 2, "idleTimeout": 1},
    )
    workers_when(runpod, endpoint_id, lambda s: s["idle"] == 1)  # warm before any job
    ids = [
        jobs(runpod, endpoint_id, "run", method="POST", json={"input": {"command": "sleep: 3"}})
        for _ in range(3)
    ]
    busiest = workers_when(runpod, endpoint_id, lambda s: s["running"] == 2)
    assert busiest["summary"]["total"] == 2  # capped at max
    worker = busiest["workers"][0]
    assert worker["gpuTypeId"] == "NVIDIA L4" and worker["dataCenterId"] == "LOCAL"
    assert worker["isStale"] is False and worker["version"] == busiest["endpointVersion"]
    for job in ids:
        status = jobs(runpod, endpoint_id, f"status/{job.json()['id']}").json()
        assert status["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    workers_when(runpod, endpoint_id, lambda s: s["total"] == 1 and s["idle"] == 1)
    runpod.rest("PATCH", f"/v2/serverless/{endpoint_id}", json={"workers": {"min": 0}})
    workers_when(runpod, endpoint_id, lambda s: s["total"] == 0)
    assert ask(runpod, endpoint_id, "hi") == "echo: hi"  # scaled up from zero
    delete(runpod, endpoint_id)


def test_the_env_reaches_workers_and_a_container_change_is_a_release(runpod, monkeypatch):
    monkeypatch.setenv("TANDEM_PARENT_SECRET", "the API's own")
    endpoint_id = endpoint(runpod, env={"GREETING": "hello"}, workers={"max": 1})
    assert ask(runpod, endpoint_id, "getenv: GREETING") == "hello"
    assert ask(runpod, endpoint_id, "getenv: TANDEM_PARENT_SECRET") == ""  # never inherited
    assert ask(runpod, endpoint_id, "getenv: RUNPOD_ENDPOINT_ID") == endpoint_id
    assert ask(runpod, endpoint_id, "getenv: PATH") == os.environ["PATH"]

    path = f"/v2/serverless/{endpoint_id}"
    scaled = runpod.rest("PATCH", path, json={"workers": {"max": 2}})
    assert scaled.json()["workers"]["max"] == 2
    releases = runpod.rest("GET", f"{path}/releases").json()
    assert releases["endpointVersion"] == 1  # scaling is no release
    changed = runpod.rest("PATCH", path, json={"env": {"GREETING": "bonjour"}})
    assert changed.json()["env"] == {"GREETING": "bonjour"}
    releases = runpod.rest("GET", f"{path}/releases").json()
    assert releases["endpointVersion"] == 2
    assert releases["releases"][0]["diff"] == [
        {"field": "env", "old": {"GREETING": "hello"}, "new": {"GREETING": "bonjour"}}
    ]
    assert ask(runpod, endpoint_id, "getenv: GREETING") == "bonjour"  # the workers rolled
    deadline = time.monotonic() + 30
    while (rollout := runpod.rest("GET", f"{path}/releases").json()["rollout"])["inProgress"]:
        assert time.monotonic() < deadline, rollout  # the old version's workers stop
        time.sleep(0.2)
    listing = runpod.rest("GET", f"{path}/workers").json()
    assert all(w["version"] == 2 and not w["isStale"] for w in listing["workers"]), listing
    delete(runpod, endpoint_id)


def test_a_template_is_read_once_and_goes_with_its_endpoint(runpod):
    template_id = template(runpod, env={"GREETING": "hello"})
    body = {**QUEUE, "name": "e", "templateId": template_id, "gpu": {"pools": ["ADA_24"]}}
    made = runpod.rest("POST", "/v2/serverless", json=body)
    assert made.status_code == 201 and made.json()["image"] == CONTROLLED_IMAGE
    endpoint_id = made.json()["id"]
    runpod.rest("PATCH", f"/v2/templates/{template_id}", json={"env": {"GREETING": "hi"}})
    assert ask(runpod, endpoint_id, "getenv: GREETING") == "hello"  # later edits do not apply
    in_use = runpod.rest("DELETE", f"/v2/templates/{template_id}")
    assert in_use.status_code == 400 and endpoint_id in in_use.json()["detail"]
    delete(runpod, endpoint_id)
    assert runpod.rest("GET", f"/v2/templates/{template_id}").status_code == 404


def test_an_unknown_image_never_becomes_ready(runpod):
    endpoint_id = endpoint(runpod, image="nobody/unknown:1", workers={"min": 1})
    listing = workers_when(runpod, endpoint_id, lambda s: s["total"] == 0)
    job = jobs(runpod, endpoint_id, "run", method="POST", json={"input": {"command": "hi"}})
    time.sleep(1)
    assert jobs(runpod, endpoint_id, f"status/{job.json()['id']}").json()["status"] == "IN_QUEUE"
    assert listing["summary"]["idle"] == listing["summary"]["running"] == 0
    delete(runpod, endpoint_id)


def test_a_pool_without_capacity_leaves_workers_unplaced(runpod):
    runpod.emulator.control.set_availability("AMPERE_16", "NONE")
    try:
        gpus = runpod.rest(
            "GET", "/v2/catalog/gpus", params={"include": "AVAILABILITY", "product": "SERVERLESS"}
        ).json()["gpus"]
        assert {g["availability"] for g in gpus if g["pool"] == "AMPERE_16"} == {"NONE"}
        endpoint_id = endpoint(runpod, gpu={"pools": ["AMPERE_16"]}, workers={"min": 1})
        listing = workers_when(runpod, endpoint_id, lambda s: s["throttled"] == 1)
        assert listing["workers"][0]["gpuTypeId"] is None
        moved = runpod.rest(
            "PATCH", f"/v2/serverless/{endpoint_id}", json={"gpu": {"pools": ["ADA_24"]}}
        )
        assert moved.json()["gpu"]["pools"] == ["ADA_24"]
        workers_when(runpod, endpoint_id, lambda s: s["idle"] == 1)  # placed on another pool
        delete(runpod, endpoint_id)
    finally:
        runpod.emulator.control.set_availability("AMPERE_16", "HIGH")
    plain = runpod.rest("GET", "/v2/catalog/gpus").json()["gpus"]
    assert "availability" not in plain[0]
    no_product = runpod.rest("GET", "/v2/catalog/gpus", params={"include": "AVAILABILITY"})
    assert no_product.status_code == 400


def registry(runpod, name: str, password: str) -> str:
    body = {"name": name, "username": PRIVATE_REGISTRY[0], "password": password}
    response = runpod.rest("POST", "/v2/registries", json=body)
    assert response.status_code == 201, response.text
    assert response.json() == {"id": response.json()["id"], "name": name}  # no credentials
    return response.json()["id"]


def test_a_private_image_is_pulled_only_with_its_registry_credential(runpod):
    right = registry(runpod, "right", PRIVATE_REGISTRY[1])
    wrong = registry(runpod, "wrong", "bm90IHRoZSBrZXk=")
    pulled = endpoint(runpod, PRIVATE_IMAGE, registry=right)
    answer = jobs(runpod, pulled, "runsync", method="POST", json={"input": {"command": "hi"}})
    assert answer.json()["status"] == "COMPLETED", answer.text
    for credential in ({}, {"registry": wrong}):
        refused = endpoint(runpod, PRIVATE_IMAGE, workers={"min": 1}, **credential)
        listing = workers_when(runpod, refused, lambda s: s["total"] == 0)
        assert listing["workers"] == []
        delete(runpod, refused)
    delete(runpod, pulled)

    listed = runpod.rest("GET", "/v2/registries").json()["registries"]
    assert {"id": right, "name": "right"} in listed
    taken = runpod.rest(
        "POST", "/v2/registries", json={"name": "right", "username": "u", "password": "p"}
    )
    assert taken.status_code == 400 and "exists" in taken.json()["detail"]
    unknown = runpod.rest(
        "POST", "/v2/templates", json={"name": "t", "image": "i", "registry": "n"}
    )
    assert unknown.status_code == 400 and "registry" in unknown.json()["detail"]
    for registry_id in (right, wrong):
        assert runpod.rest("DELETE", f"/v2/registries/{registry_id}").status_code == 204
    assert runpod.rest("GET", f"/v2/registries/{right}").status_code == 404


def test_a_secret_reference_is_filled_in_when_a_worker_boots(runpod):
    made = runpod.rest("POST", "/v2/account/secrets", json={"name": "greeting", "value": "hello"})
    assert made.status_code == 201 and "value" not in made.json()
    reference = "{{ RUNPOD_SECRET_greeting }}"
    endpoint_id = endpoint(runpod, env={"GREETING": reference, "N": "1"})
    assert ask(runpod, endpoint_id, "getenv: GREETING") == "hello"
    path = f"/v2/serverless/{endpoint_id}"
    assert runpod.rest("GET", path).json()["env"]["GREETING"] == reference  # never the value
    secret_id = made.json()["id"]
    runpod.rest("PATCH", f"/v2/account/secrets/{secret_id}", json={"value": "bonjour"})
    assert ask(runpod, endpoint_id, "getenv: GREETING") == "hello"  # kept from its boot
    runpod.rest("PATCH", path, json={"env": {"GREETING": reference, "N": "2"}})
    assert ask(runpod, endpoint_id, "getenv: GREETING") == "bonjour"  # a release: new workers
    delete(runpod, endpoint_id)

    taken = runpod.rest("POST", "/v2/account/secrets", json={"name": "GREETING", "value": "x"})
    assert taken.status_code == 409  # names are unique, whatever their case
    assert taken.json() == {"title": "Conflict", "status": 409, "detail": taken.json()["detail"]}
    reserved = runpod.rest("POST", "/v2/account/secrets", json={"name": "RunPod_x", "value": "x"})
    assert reserved.status_code == 422 and "reserved" in reserved.json()["detail"]
    listed = runpod.rest("GET", "/v2/account/secrets", params={"name": "greeting"}).json()
    assert [s["id"] for s in listed["secrets"]] == [secret_id]
    assert runpod.rest("DELETE", f"/v2/account/secrets/{secret_id}").status_code == 204
    assert runpod.rest("GET", f"/v2/account/secrets/{secret_id}").status_code == 404


def test_worker_logs_and_billing(runpod):
    endpoint_id = endpoint(runpod, workers={"min": 1, "max": 1})
    listing = workers_when(runpod, endpoint_id, lambda s: s["idle"] == 1)
    worker_id = listing["workers"][0]["id"]
    assert ask(runpod, endpoint_id, "hi") == "echo: hi"
    headers = {"Authorization": f"Bearer {runpod.api_key}"}
    url = f"{runpod.url}/v2/serverless/{endpoint_id}/workers/{worker_id}/logs"
    lines = []
    with httpx.stream("GET", url, headers=headers, params={"tail": 50}, timeout=5) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        try:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    lines.append(line)
        except httpx.ReadTimeout:
            pass  # the stream stays open while the worker runs
    assert lines and '"source": "container"' in lines[0]
    delete(runpod, endpoint_id)

    billing = runpod.rest("GET", "/v2/billing/serverless", params={"serverlessId": endpoint_id})
    records = billing.json()["records"]
    assert len(records) == 1 and records[0]["serverlessId"] == endpoint_id
    seconds = records[0]["totalAmount"] / (0.00019 * 1)  # an L4 (ADA_24): $0.00019 a second
    assert 1 <= seconds <= 120, records  # the worker's seconds, at its pool's price
    missing = runpod.rest("GET", f"/v2/serverless/{endpoint_id}/workers/x/logs")
    assert missing.status_code == 404


def test_runpods_rules(runpod):
    endpoint_id = endpoint(runpod, workers={"max": 1}, flashboot="FLASHBOOT")
    live = runpod.rest("GET", f"/v2/serverless/{endpoint_id}").json()
    assert live["name"] == "e" and live["flashboot"] == "FLASHBOOT"  # returned in v2
    assert live["requestUrls"]["runSync"] == f"{runpod.jobs_url}/{endpoint_id}/runsync"
    delete(runpod, endpoint_id)
    path = f"/v2/serverless/{endpoint_id}"
    assert runpod.rest("GET", path).status_code == 404
    assert runpod.rest("PATCH", path, json={"workers": {"max": 1}}).status_code == 404
    assert runpod.rest("DELETE", path).status_code == 404
    low_high = runpod.rest(
        "POST",
        "/v2/serverless",
        json={
            **QUEUE,
            "name": "e",
            "image": CONTROLLED_IMAGE,
            "gpu": {"pools": ["ADA_24"]},
            "workers": {"min": 3, "max": 1},
        },
    )
    assert low_high.status_code == 400 and "workers.min" in low_high.json()["detail"]
    excluded = runpod.rest(
        "POST",
        "/v2/serverless",
        json={
            **QUEUE,
            "name": "e",
            "image": CONTROLLED_IMAGE,
            "gpu": {"pools": ["ADA_24"], "excludedTypes": ["NVIDIA L4", "NVIDIA GeForce RTX 4090"]},
        },
    )
    assert excluded.status_code == 400 and "leaves no GPU type" in excluded.json()["detail"]
    unauthorized = httpx.get(f"{runpod.url}/v2/serverless", headers={"Authorization": "Bearer x"})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["content-type"] == "application/problem+json"
