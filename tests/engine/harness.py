"""The real Pulumi engine on a test project: the CLI the project builds (`make engine`, into
.pulumi/bin) or a compatible `pulumi` on PATH, a `file://` backend in a temporary folder, a
passphrase for secrets, no Pulumi Cloud and no network. The project has the real project's
runtime options (Pulumi.yaml's `runtime`, with `main:` in a subdirectory) and runs
tests/engine/program against the emulator's RunPod control plane, its workers' image in a
private registry there."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pulumi.automation import ConfigValue

from stacks.workspace import AutomationWorkspace, write_settings
from tests.engine import HMAC_SECRET
from tests.runpod_control import PRIVATE_IMAGE, PRIVATE_REGISTRY, ControlPlane

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINE_BIN = REPO_ROOT / ".pulumi" / "bin"
MIN_VERSION = (3, 272)  # the `pulumi` SDK's pin (pyproject.toml)
HOW_TO_GET = "run `make engine` (needs Go) or put a pulumi >= 3.272 on PATH"
PASSPHRASE = "engine-tests"
PATH = os.environ["PATH"]
GPU = {
    "llm": {"gpuTypes": ["NVIDIA GeForce RTX 4090"], "workersMax": 1, "idleTimeout": 2},
    "clip": {"gpuTypes": ["NVIDIA RTX A4000"], "workersMax": 1, "idleTimeout": 2},
}


def engine_bin() -> tuple[Path | None, str]:
    """The folder of the `pulumi` to use, or None and why there is none."""
    built = ENGINE_BIN / "pulumi"
    found = built if built.exists() else shutil.which("pulumi")
    if found is None:
        return None, f"no Pulumi engine: {HOW_TO_GET}"
    version = subprocess.run(
        [str(found), "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    parts = tuple(int(p) for p in version.lstrip("v").split(".")[:2] if p.isdigit())
    if parts < MIN_VERSION:
        return None, f"{found} is version {version!r}, older than 3.272: {HOW_TO_GET}"
    return Path(found).parent, ""


class Project:
    """A Pulumi project in `root` whose stacks live in a file backend beside it."""

    def __init__(self, root: Path, control: ControlPlane, bin_dir: Path) -> None:
        self.root = root
        self.control = control
        self.bin_dir = bin_dir
        real = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
        project = {"name": "tandem-engine-test", "runtime": real["runtime"], "main": "program/"}
        root.mkdir(parents=True, exist_ok=True)
        (root / "Pulumi.yaml").write_text(yaml.safe_dump(project))
        shutil.copytree(Path(__file__).with_name("program"), root / "program")
        (root.parent / "state").mkdir(exist_ok=True)
        (root.parent / "home").mkdir(exist_ok=True)
        self.env = {
            "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), PATH]),
            "PULUMI_HOME": str(root.parent / "home"),
            "PULUMI_BACKEND_URL": f"file://{root.parent / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "1",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        }

    def write_dev(self, api_base: str | None = None, **gpu: dict[str, Any]) -> None:
        """Pulumi.dev.yaml: a Tandem stack config on the control plane (or `api_base`), GPU
        settings changed by `gpu` (endpoint -> settings), keeping its salt and secrets."""
        settings = {
            "gcp:project": "engine-test",
            "tandem:environment": "dev",
            "tandem:runpodApiBase": api_base or self.control.url,
            "tandem:gpu": {name: {**GPU[name], **gpu.get(name, {})} for name in GPU},
            "test:image": PRIVATE_IMAGE,
            "test:registryUsername": PRIVATE_REGISTRY[0],
        }
        write_settings(self.root / "Pulumi.dev.yaml", settings)

    def pulumi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin_dir / "pulumi"), *args, "--non-interactive"],
            cwd=self.root,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def stacks(self, *args: str) -> subprocess.CompletedProcess:
        """`python -m stacks --work-dir ROOT ARGS...`, as CI runs it."""
        return subprocess.run(
            [sys.executable, "-m", "stacks", "--work-dir", str(self.root), *args],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def up_dev(self, api_key: str) -> AutomationWorkspace:
        """Create the dev stack (settings, the RunPod key as a secret) and `pulumi up` it, in
        this process's environment (the Automation API runs the CLI with it)."""
        os.environ.update(self.env)
        self.write_dev()
        workspace = AutomationWorkspace(self.root)
        stack = workspace.stack("dev", create=True)
        stack.set_config("tandem:runpodApiKey", ConfigValue(api_key, secret=True))
        stack.set_config("test:registryPassword", ConfigValue(PRIVATE_REGISTRY[1], secret=True))
        stack.set_config("test:hmacSecret", ConfigValue(HMAC_SECRET, secret=True))
        stack.up()
        return workspace
