"""Capture what `stacks/` and the workflow scripts parse, from the real Pulumi engine, into
tests/stacks/fixtures/ for the fast unit tests: `python -m tests.engine.capture` (needs the
engine: `make engine`). The scenario runs the engine tests' project against the local RunPod:
* refresh-clean.json: the engine events of a refresh preview of an unchanged stack;
* refresh-drifted.json: the same after changes out of band (the llm endpoint's workers.max
  and GPU pools, the clip endpoint's env; the RunPod secret deleted);
* preview-dev.txt: `pulumi preview --diff` of a change to the program's settings (the text the
  preview workflow posts).
"""

import json
import sys
import tempfile
from pathlib import Path

from tests.engine.harness import Project, engine_bin
from tests.runpod_control import ControlPlane

FIXTURES = Path(__file__).resolve().parents[1] / "stacks" / "fixtures"
KEY = "rp-capture-key"


def main() -> None:
    bin_dir, why = engine_bin()
    if bin_dir is None:
        sys.exit(why)
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(KEY) as control:
        project = Project(Path(tmp) / "project", control, bin_dir)
        workspace = project.up_dev(KEY)
        outputs = workspace.stack("dev").outputs()
        llm, clip = outputs["llm_endpoint_id"].value, outputs["clip_endpoint_id"].value
        captured = {"refresh-clean.json": workspace.preview_refresh("dev")}

        control.rest("PATCH", f"/v2/serverless/{llm}", json={"workers": {"max": 3}})
        control.rest("PATCH", f"/v2/serverless/{llm}", json={"gpu": {"pools": ["ADA_80_PRO"]}})
        control.rest("PATCH", f"/v2/serverless/{clip}", json={"env": {"TASK": "changed"}})
        [secret] = control.rest("GET", "/v2/account/secrets").json()["secrets"]
        control.rest("DELETE", f"/v2/account/secrets/{secret['id']}")
        captured["refresh-drifted.json"] = workspace.preview_refresh("dev")

        project.write_dev(llm={"workersMax": 2, "idleTimeout": 30})
        preview = workspace.stack("dev").preview(diff=True, color="never", suppress_progress=True)
        captured["preview-dev.txt"] = preview.stdout
        assert not control.violations, control.violations
    FIXTURES.mkdir(exist_ok=True)
    for name, content in captured.items():
        text = content if isinstance(content, str) else json.dumps(content, indent=1) + "\n"
        (FIXTURES / name).write_text(text)
        print(f"wrote {FIXTURES / name}")


if __name__ == "__main__":
    main()
