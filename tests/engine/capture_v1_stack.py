"""Capture a stack made by the last release that spoke RunPod's REST API v1, for the upgrade
test: `python -m tests.engine.capture_v1_stack` (needs the engine). It runs the engine tests'
project against that release's local RunPod and writes tests/engine/fixtures/v1-stack/:
* Pulumi.dev.yaml: the stack's settings (its secrets, sealed with the tests' passphrase);
* state.json: `pulumi stack export` of the stack after `up`;
* runpod.json: what the local RunPod held then (templates, endpoints, registry credentials,
  secrets), as its v1 API showed it: the account the state points at.
This script speaks v1 and is removed by the change to v2; the files are what it captured.
"""

import json
import sys
import tempfile
from pathlib import Path

from tests.engine.harness import Project, engine_bin
from tests.runpod_control import ControlPlane

FIXTURES = Path(__file__).with_name("fixtures") / "v1-stack"
KEY = "rp-capture-key"


def main() -> None:
    bin_dir, why = engine_bin()
    if bin_dir is None:
        sys.exit(why)
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(KEY) as control:
        project = Project(Path(tmp) / "project", control, bin_dir)
        project.up_dev(KEY)
        state = project.pulumi("stack", "export", "--stack", "dev").stdout
        plane = control.emulator.control
        runpod = {
            "base_url": control.url.removesuffix("/v1"),
            "templates": plane.templates,
            "endpoints": plane.endpoints,
            "registry_auths": plane.registry_auths,
            "secrets": plane.secrets,
        }
        settings = (project.root / "Pulumi.dev.yaml").read_text()
        assert not control.violations, control.violations
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "Pulumi.dev.yaml").write_text(settings)
    (FIXTURES / "state.json").write_text(state)
    (FIXTURES / "runpod.json").write_text(json.dumps(runpod, indent=1) + "\n")
    print(f"wrote {FIXTURES}")


if __name__ == "__main__":
    main()
