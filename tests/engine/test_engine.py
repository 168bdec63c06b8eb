"""The real Pulumi engine on the test project (tests/engine/program) against the local RunPod's
control plane (REST API v2): up, no perpetual diff, secrets, updates, replacement, key rotation,
drift, policies, the preview comment, review stacks and destroy. The tests share one dev stack
and run in order; each leaves the stack as it found it, the last one destroys it."""

import json
import os
import subprocess
import uuid

import pytest
import runpod
from pulumi.automation import CommandError, ConfigValue

from runpod_api.client import RunPodRest
from runpod_api.names import deployment_name, stack_prefix
from tests.engine import HMAC_SECRET
from tests.engine.harness import REPO_ROOT, Project, engine_bin
from tests.net import free_port
from tests.runpod_control import PRIVATE_IMAGE, PRIVATE_REGISTRY, ControlPlane

pytestmark = pytest.mark.engine
KEY, NEW_KEY = "rp-engine-key-1", "rp-engine-key-2"
POLICY_PACK = str(REPO_ROOT / "infra" / "policy" / "analyzer")


@pytest.fixture(scope="module")
def bin_dir():
    found, why = engine_bin()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(why)  # CI must run this tier
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def control():
    with ControlPlane(KEY) as plane:
        yield plane
    assert plane.violations == []


@pytest.fixture(scope="module")
def project(bin_dir, control, tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        for name in ("PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL"):
            env.delenv(name, raising=False)
        project = Project(tmp_path_factory.mktemp("engine") / "project", control, bin_dir)
        for name, value in project.env.items():
            env.setenv(name, value)
        project.workspace = project.up_dev(KEY)
        yield project


def dev(project):
    return project.workspace.stack("dev")


def endpoint_ids(project) -> dict[str, str]:
    outputs = dev(project).outputs()
    return {name: outputs[f"{name}_endpoint_id"].value for name in ("llm", "clip")}


def test_up_makes_endpoints_that_answer_jobs_and_no_perpetual_diff(project, control, monkeypatch):
    ids = endpoint_ids(project)
    live = control.rest("GET", f"/v2/serverless/{ids['llm']}").json()
    assert live["gpu"]["pools"] == ["ADA_24"] and live["gpu"]["excludedTypes"] == ["NVIDIA L4"]
    assert live["workers"]["max"] == 1 and live["flashboot"] == "FLASHBOOT"
    assert live["env"]["TASK"] == "llm"
    # The image is in a private registry: the endpoint pulls it with the stack's credential.
    auth_id = dev(project).outputs()["runpod_registry_auth_id"].value
    assert live["image"] == PRIVATE_IMAGE and live["registry"] == auth_id
    assert control.rest("GET", f"/v2/registries/{auth_id}").json() == {
        "id": auth_id,
        "name": "tandem-dev-test-registry",
    }
    # The HMAC secret is a RunPod secret: the endpoint holds a reference, the worker the value.
    assert live["env"]["EMBEDDING_HMAC_SECRET"] == "{{ RUNPOD_SECRET_tandem-dev-hmac }}"
    monkeypatch.setattr(runpod, "api_key", control.api_key)
    monkeypatch.setattr(runpod, "endpoint_url_base", control.jobs_url)
    answer = runpod.Endpoint(ids["llm"]).run_sync({"command": "hello"}, timeout=90)
    assert answer[-1]["raw_text"] == "echo: hello"  # a worker of the pulled image answered
    assert worker_env(ids["llm"], "EMBEDDING_HMAC_SECRET") == HMAC_SECRET
    dev(project).preview(expect_no_changes=True)  # refresh and flashboot names included
    dev(project).refresh()
    dev(project).preview(expect_no_changes=True)


def worker_env(endpoint_id: str, name: str) -> str:
    """Variable `name` as a worker of the endpoint sees it (runpod's client set up by the
    caller)."""
    answer = runpod.Endpoint(endpoint_id).run_sync({"command": f"getenv: {name}"}, timeout=90)
    return answer[-1]["raw_text"]


def test_a_new_hmac_secret_is_a_new_release_of_the_workers(project, control, monkeypatch):
    monkeypatch.setattr(runpod, "api_key", control.api_key)
    monkeypatch.setattr(runpod, "endpoint_url_base", control.jobs_url)
    llm = endpoint_ids(project)["llm"]
    dev(project).set_config("test:hmacSecret", ConfigValue("a-new-hmac-secret", secret=True))
    try:
        changes = dev(project).up().summary.resource_changes
        # The secret, and both endpoints' and templates' fingerprint: a release of each
        assert changes == {"update": 5, "same": 5}
        assert worker_env(llm, "EMBEDDING_HMAC_SECRET") == "a-new-hmac-secret"
    finally:
        dev(project).set_config("test:hmacSecret", ConfigValue(HMAC_SECRET, secret=True))
        dev(project).up()
    assert worker_env(llm, "EMBEDDING_HMAC_SECRET") == HMAC_SECRET


def exported_state(project) -> str:
    """The stack's state as stored (`pulumi stack export`, secrets left encrypted)."""
    return project.pulumi("stack", "export", "--stack", "dev").stdout


def test_state_holds_no_key_no_hmac_secret_and_no_registry_password_in_plain_text(project):
    text = exported_state(project)
    assert KEY not in text and HMAC_SECRET not in text and PRIVATE_REGISTRY[1] not in text
    state = json.loads(text)["deployment"]
    containers = [r for r in state["resources"] if "image" in r.get("outputs", {})]
    assert len(containers) == 4 and all("ciphertext" in r["outputs"]["env"] for r in containers)
    [auth] = [r for r in state["resources"] if "username" in r.get("outputs", {})]
    assert "ciphertext" in auth["outputs"]["password"]
    [secret] = [r for r in state["resources"] if r["urn"].endswith("::tandem-dev-hmac")]
    assert "ciphertext" in secret["outputs"]["value"]


def test_in_place_update_replacement_and_removing_a_field(project, control):
    before = endpoint_ids(project)
    project.write_dev(llm={"workersMax": 2, "networkVolumeIds": ["vol-eu", "vol-us"]})
    result = dev(project).up()  # the endpoint, and both containers' env (HF_HOME on the volume)
    assert result.summary.resource_changes == {"update": 2, "same": 8}
    path = f"/v2/serverless/{before['llm']}"
    live = control.rest("GET", path).json()
    assert (live["workers"]["max"], live["networkVolumes"]) == (2, ["vol-eu", "vol-us"])
    assert live["env"]["HF_HOME"] == "/runpod-volume/huggingface"  # a release: rolled
    assert control.rest("GET", f"{path}/releases").json()["releases"][0]["diff"][0]["field"] == (
        "env"
    )

    project.write_dev()  # networkVolumeIds removed, workersMax back to 1
    assert dev(project).up().summary.resource_changes == {"update": 2, "same": 8}
    live = control.rest("GET", path).json()
    assert live["workers"]["max"] == 1 and live["networkVolumes"] == []
    assert "HF_HOME" not in live["env"]
    dev(project).preview(expect_no_changes=True)

    [urn] = [
        r["urn"]
        for r in dev(project).export_stack().deployment["resources"]
        if r["urn"].endswith("tandem-dev-clip-endpoint")
    ]
    assert dev(project).up(replace=[urn]).summary.resource_changes["replace"] == 1
    after = endpoint_ids(project)
    assert after["clip"] != before["clip"] and after["llm"] == before["llm"]
    assert control.rest("GET", f"/v2/serverless/{before['clip']}").status_code == 404


def test_a_rotated_key_is_used_with_no_diff(project, control):
    control.rotate_key(NEW_KEY)  # RunPod revokes the old key
    with pytest.raises(CommandError) as refused:
        dev(project).refresh()
    assert "401" in str(refused.value) and KEY not in str(refused.value)
    dev(project).set_config("tandem:runpodApiKey", ConfigValue(NEW_KEY, secret=True))
    dev(project).preview(expect_no_changes=True)  # the key is no resource property:
    assert dev(project).up().summary.resource_changes == {"same": 10}  # applied, nothing changed
    dev(project).refresh()  # and from now on the providers use the new key
    assert NEW_KEY not in exported_state(project)


def drift(project, *args):
    return project.stacks("drift", "--stack", "dev", *args)


def test_drift_names_what_changed_out_of_band(project, control):
    clean = drift(project)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip() == "dev: no drift"

    ids = endpoint_ids(project)
    control.rest("PATCH", f"/v2/serverless/{ids['llm']}", json={"workers": {"max": 3}})
    control.rest("PATCH", f"/v2/serverless/{ids['llm']}", json={"gpu": {"pools": ["ADA_80_PRO"]}})
    control.rest("PATCH", f"/v2/serverless/{ids['clip']}", json={"env": {"TASK": "edited"}})
    drifted = drift(project)
    assert drifted.returncode == 2, drifted.stdout + drifted.stderr
    out = drifted.stdout
    assert "drifted: pulumi-python:dynamic:Resource tandem-dev-llm-endpoint" in out
    assert "workers.max: 1 -> 3" in out and '["ADA_80_PRO"]' in out
    assert "tandem-dev-clip-endpoint\n    env: [secret] -> [secret]" in out  # its own container
    assert "edited" not in out and HMAC_SECRET not in out

    control.rest("DELETE", f"/v2/serverless/{ids['clip']}")
    deleted = drift(project, "--format", "json")
    assert deleted.returncode == 2
    assert '"status": "deleted"' in deleted.stdout and "tandem-dev-clip-endpoint" in deleted.stdout

    dev(project).up(refresh=True)  # put everything back: the deleted endpoint is made again
    assert drift(project).returncode == 0


def deployed(control, stack: str) -> dict:
    """What the stack's API makes for a deployment (app/services/deployment_runner.py): an
    endpoint named with the stack's prefix."""
    body = {
        "name": deployment_name(stack_prefix(stack), uuid.uuid4()),
        "type": "QUEUE",
        "image": "tandem/llm:test",
        "gpu": {"pools": ["ADA_24"]},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }
    return control.rest("POST", "/v2/serverless", json=body).json()


def test_drift_and_up_leave_the_apis_deployments_alone(project, control):
    """What the API makes for a deployment is no Pulumi resource: drift does not report it
    and `pulumi up` leaves it be."""
    endpoint = deployed(control, "dev")
    try:
        clean = drift(project)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert clean.stdout.strip() == "dev: no drift"
        dev(project).preview(expect_no_changes=True)
        dev(project).up()
        assert control.rest("GET", f"/v2/serverless/{endpoint['id']}").json() == endpoint
    finally:
        with RunPodRest(control.api_key, control.url) as rest:  # as the API removes it
            rest.delete_endpoint(endpoint["id"])


def test_drift_with_the_control_plane_down_is_an_error(project):
    project.write_dev(api_base=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    dev(project).up()  # applied: a refresh uses the config of the last update
    try:
        down = drift(project)
    finally:
        project.write_dev()
        dev(project).up()
    assert down.returncode == 1
    assert down.stdout.startswith("dev: could not be checked: OperationFailed: ")
    assert "RunPodApiError: RunPod answered 0 to GET" in down.stdout
    assert "cannot reach RunPod" in down.stdout


def test_the_policy_pack_refuses_a_gpu_it_does_not_allow(project):
    if not (REPO_ROOT / "infra" / "policy" / "venv" / "bin" / "python").exists():
        pytest.fail("the policy pack has no virtualenv: run `make policy-venv`")
    project.write_dev(llm={"gpuTypes": ["NVIDIA H100 80GB HBM3"]})
    try:
        with pytest.raises(CommandError) as refused:
            dev(project).preview(policy_packs=[POLICY_PACK])
    finally:
        project.write_dev()
    message = str(refused.value)
    assert "[mandatory]  gpu-endpoints-within-limits" in message
    assert "GPU pool 'ADA_80_PRO' needs allowPremiumGpus" in message
    dev(project).preview(policy_packs=[POLICY_PACK])  # allowed again


def test_the_policy_pack_refuses_a_stack_over_its_budget(project, tmp_path):
    """The budget policy prices what the engine would declare: a warm llm worker (workersMin 1,
    730 hours a month at its pool's price) is over $100; scaled to zero it is not."""
    if not (REPO_ROOT / "infra" / "policy" / "venv" / "bin" / "python").exists():
        pytest.fail("the policy pack has no virtualenv: run `make policy-venv`")
    budget = tmp_path / "policy.json"
    expected = {"stack": "dev", "active_hours": {"llm": 1.0}}
    budget.write_text(json.dumps({"within-budget": {"monthlyUsd": 100, "expected": expected}}))
    project.write_dev(llm={"workersMin": 1})
    try:
        with pytest.raises(CommandError) as refused:
            dev(project).preview(policy_packs=[POLICY_PACK], policy_pack_configs=[str(budget)])
    finally:
        project.write_dev()
    message = str(refused.value)
    assert "[mandatory]  within-budget" in message
    assert "is over budget.monthlyUsd $100.00 (most: tandem-dev-llm-endpoint $" in message
    dev(project).preview(policy_packs=[POLICY_PACK], policy_pack_configs=[str(budget)])


def test_the_preview_comment_counts_a_real_preview(project, tmp_path):
    project.write_dev(llm={"idleTimeout": 30})
    try:
        preview = dev(project).preview(diff=True, color="never", suppress_progress=True)
    finally:
        project.write_dev()
    (tmp_path / "preview-dev.txt").write_text(preview.stdout)
    comment = subprocess.run(
        [str(REPO_ROOT / ".github" / "scripts" / "preview-comment"), "0123456789ab", "dev=success"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "<b>dev</b>: success (~ 1 to update, 9 unchanged)</summary>" in comment
    assert "~ idleTimeout: 2 => 30" in comment


def test_review_stacks_up_destroy_and_gc(project, control):
    dev_ids = endpoint_ids(project)
    auth_id = dev(project).outputs()["runpod_registry_auth_id"].value
    up = project.stacks("review", "up", "--pr", "7", "--sha", "0123456789abcdef")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert f"| `llm_endpoint_id` | {dev_ids['llm']} |" in up.stdout  # dev's, by reference
    assert set(control.emulator.control.endpoints) == set(dev_ids.values())  # none of its own
    review = project.workspace.stack("pr-7").get_all_config()
    assert review["tandem:environment"].value == "review"
    assert review["tandem:runpodApiKey"].secret  # copied from dev, encrypted with pr-7's key

    destroyed = project.stacks("review", "destroy", "--pr", "7")
    assert destroyed.returncode == 0 and "pr-7: destroyed and removed" in destroyed.stdout
    assert set(control.emulator.control.endpoints) == set(dev_ids.values())

    # A PR that changes the workers: endpoints of its own, pulling with dev's credential.
    own = project.stacks("review", "up", "--pr", "8", "--own-gpu-endpoints")
    assert own.returncode == 0, own.stdout[-3000:] + own.stderr[-3000:]
    assert len(control.emulator.control.endpoints) == 4
    endpoints = control.emulator.control.endpoints.values()
    assert {e["registry"] for e in endpoints} == {auth_id}
    deployed(control, "pr-8")  # its API's: removed with it
    gc = project.stacks("review", "gc", "--max-age", "0h")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert "pr-8: destroyed (last updated" in gc.stdout
    assert [s.name for s in project.workspace.workspace.list_stacks()] == ["dev"]
    assert set(control.emulator.control.endpoints) == set(dev_ids.values())


def test_destroy_leaves_runpod_empty(project, control):
    """Its endpoints, templates, credential and secret, and what its API deployed."""
    deployed(control, "dev")
    dev(project).destroy()
    assert control.emulator.control.endpoints == {}
    assert control.emulator.control.templates == {}
    assert control.emulator.control.registries == {}
    assert control.emulator.control.secrets == {}
