"""Capture what `stacks/` and the workflow scripts parse, from the real Pulumi engine, into
tests/stacks/fixtures/ for the fast unit tests: `python -m tests.engine.capture` (needs the
engine: `make engine`). The scenario runs the engine tests' project against the emulator:
* refresh-clean.json: the engine events of a refresh preview of an unchanged stack;
* refresh-drifted.json: the same after changes out of band (the llm endpoint's workersMax
  and GPU types, the clip template's env; the clip endpoint deleted);
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

        control.rest("PATCH", f"/endpoints/{llm}", json={"workersMax": 3})
        control.rest("PATCH", f"/endpoints/{llm}", json={"gpuTypeIds": ["NVIDIA L4"]})
        template = control.rest("GET", f"/endpoints/{clip}").json()["templateId"]
        control.rest("PATCH", f"/templates/{template}", json={"env": {"TASK": "changed"}})
        control.rest("PATCH", f"/endpoints/{clip}", json={"workersMin": 0, "workersMax": 0})
        control.rest("DELETE", f"/endpoints/{clip}")
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
