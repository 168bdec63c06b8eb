"""A stack made by the release that spoke RunPod's REST API v1 upgrades in place: its state
(captured from that release's engine run, tests/engine/fixtures/v1-stack) is imported, the
account it points at is served by the local RunPod as REST API v2 shows the same objects, and
`pulumi up` with today's code updates, never replaces: the same endpoint and template ids, no
deletion, and a drift check right after finds nothing."""

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from runpod_api import catalog
from runpod_api.emulator.control import JOB_ROUTES
from stacks.workspace import AutomationWorkspace
from tests.engine.harness import Project, engine_bin
from tests.runpod_control import ControlPlane

pytestmark = pytest.mark.engine
FIXTURE = Path(__file__).with_name("fixtures") / "v1-stack"
KEY = "rp-capture-key"  # the key the fixture's stack holds (sealed in its Pulumi.dev.yaml)


def as_v2(plane, captured: dict) -> None:
    """Put the captured account into the local RunPod as REST API v2 shows it: the same ids,
    an endpoint's container from the template it was made on, GPU types as their pools."""
    for registry_id, item in captured["registry_auths"].items():
        plane.registries[registry_id] = dict(item)
    for secret_id, item in captured["secrets"].items():
        plane.secrets[secret_id] = dict(item) | {"valueLastUpdatedAt": item["createdAt"]}
    for template_id, item in captured["templates"].items():
        plane.templates[template_id] = {
            "id": template_id,
            "name": item["name"],
            "image": item["imageName"],
            "args": "",
            "disk": item["containerDiskInGb"],
            "mounts": {},
            "ports": [],
            "env": dict(item["env"]),
            "registry": item.get("containerRegistryAuthId"),
            "serverless": item["isServerless"],
            "public": False,
            "category": "NVIDIA",
            "startSsh": True,
            "startJupyter": True,
            "allowedCudaVersions": [],
        }
    for endpoint_id, item in captured["endpoints"].items():
        urls = {key: f"{plane.base_url}/v2/{endpoint_id}{path}" for key, path in JOB_ROUTES.items()}
        template = plane.templates[item["templateId"]]
        selection = catalog.select(item["gpuTypeIds"], catalog.snapshot()["gpus"])
        gpu = {"pools": selection.pools, "count": item["gpuCount"]}
        plane.endpoints[endpoint_id] = {
            "id": endpoint_id,
            "name": item["name"].removesuffix(" -fb"),
            "type": "QUEUE",
            "requestUrls": urls,
            **{key: copy.deepcopy(template[key]) for key in ("image", "args", "disk", "ports")},
            "env": dict(template["env"]),
            "registry": template["registry"],
            "gpu": {"excludedTypes": selection.excluded_types, "allowedCudaVersions": []}
            | gpu
            | {"minCudaVersion": None},
            "workers": {
                "min": item["workersMin"],
                "max": item["workersMax"],
                "idleTimeout": item["idleTimeout"],
            },
            "scaling": {"type": item["scalerType"], "queueDelay": item["scalerValue"]},
            "dataCenterIds": item["dataCenterIds"],
            "networkVolumes": [],
            "timeout": item["executionTimeoutMs"],
            "flashboot": "FLASHBOOT" if item["name"].endswith(" -fb") else "OFF",
            "createdAt": item["createdAt"].replace("+00:00", "Z"),
        }
        plane.bound[endpoint_id] = item["templateId"]
        plane.releases[endpoint_id] = [
            {
                "id": f"r-{endpoint_id}",
                "version": 1,
                "source": "MANUAL",
                "workerCount": 0,
                "createdAt": plane.endpoints[endpoint_id]["createdAt"],
                "diff": [],
            }
        ]


@pytest.fixture
def upgraded_project(tmp_path, monkeypatch):
    bin_dir, why = engine_bin()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    captured = json.loads((FIXTURE / "runpod.json").read_text())
    with ControlPlane(KEY) as control:
        as_v2(control.emulator.control, captured)
        for endpoint in control.emulator.control.endpoints.values():
            control.emulator.apply(endpoint)
        project = Project(tmp_path / "project", control, bin_dir)
        for name in ("PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in project.env.items():
            monkeypatch.setenv(name, value)
        settings = yaml.safe_load((FIXTURE / "Pulumi.dev.yaml").read_text())
        settings["config"]["tandem:runpodApiBase"] = control.url  # where the account is now
        del settings["config"]["tandem:runpodApiV2Base"]  # v1's second setting, gone
        (project.root / "Pulumi.dev.yaml").write_text(yaml.safe_dump(settings))
        project.pulumi("stack", "init", "dev")
        project.pulumi("stack", "import", "--stack", "dev", "--file", str(FIXTURE / "state.json"))
        yield project, control, captured
    assert control.violations == []


def test_a_v1_stack_upgrades_in_place_and_shows_no_drift(upgraded_project):
    project, control, captured = upgraded_project
    stack = AutomationWorkspace(project.root).stack("dev")
    result = stack.up()
    changes = result.summary.resource_changes
    assert set(changes) <= {"update", "same"}, changes  # no create, replace or delete
    assert changes["update"] >= 2  # both endpoints now carry their container
    outputs = stack.outputs()
    ids = {outputs[f"{name}_endpoint_id"].value for name in ("llm", "clip")}
    assert ids == set(captured["endpoints"])  # the same endpoints
    assert set(control.emulator.control.templates) == set(captured["templates"])
    for endpoint_id in ids:  # the container moved onto the endpoint without a new release
        releases = control.rest("GET", f"/v2/serverless/{endpoint_id}/releases").json()
        assert releases["endpointVersion"] == 1, releases

    drift = project.stacks("drift", "--stack", "dev")
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert drift.stdout.strip() == "dev: no drift"
    stack.preview(expect_no_changes=True)
