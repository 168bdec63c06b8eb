"""The dynamic-provider launcher as the engine starts it for a `pulumi up` of this repository:
the Pulumi.yaml runtime options as PULUMI_RUNTIME_* variables, the program's folder (infra/) as
the working directory (pkg/resource/plugin/provider_plugin.go). With the options Pulumi.yaml
has, the launcher must find a Python with the SDK and serve its gRPC port."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.engine.harness import REPO_ROOT, engine_bin

pytestmark = pytest.mark.engine


def test_the_launcher_starts_with_the_projects_runtime_options():
    bin_dir, why = engine_bin()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    options = project["runtime"].get("options", {})
    env = {f"PULUMI_RUNTIME_{key.upper()}": str(value) for key, value in options.items()}
    python_bin = str(Path(sys.executable).parent)  # the activated virtualenv
    launcher = subprocess.Popen(
        [str(bin_dir / "pulumi-resource-pulumi-python")],
        cwd=REPO_ROOT / project["main"],
        env={**os.environ, **env, "PATH": os.pathsep.join([python_bin, os.environ["PATH"]])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = launcher.stdout.readline().strip()
        assert port.isdigit(), launcher.stderr.read() if launcher.poll() is not None else port
    finally:
        launcher.kill()
        launcher.wait()
