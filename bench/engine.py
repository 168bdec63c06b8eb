"""The real Pulumi engine on the engine tests' project against the emulator's RunPod control
plane: `pulumi up` creating the stack (2 templates, 2 endpoints), an `up` with nothing to do,
`python -m stacks drift` on the unchanged stack (against its 15 s target) and `destroy`, each
timed over a few rounds; with --build, also the engine's build from its Go modules (module
cache warm; a fresh machine also downloads them).

    .venv/bin/python bench/engine.py [--rounds 3] [--build]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DRIFT_TARGET_S = 15.0


def one_round(project) -> dict[str, float]:
    """The seconds each step takes on a fresh stack."""
    seconds = {}
    started = time.perf_counter()
    workspace = project.up_dev("bench-key")
    seconds["up (create)"] = time.perf_counter() - started
    started = time.perf_counter()
    workspace.stack("dev").up()
    seconds["up (no change)"] = time.perf_counter() - started
    started = time.perf_counter()
    drift = project.stacks("drift", "--stack", "dev")
    seconds["drift"] = time.perf_counter() - started
    assert drift.returncode == 0, drift.stdout + drift.stderr
    started = time.perf_counter()
    workspace.stack("dev").destroy()
    seconds["destroy"] = time.perf_counter() - started
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--build", action="store_true", help="also time `infra/engine/build`")
    args = parser.parse_args()
    from tests.engine.harness import REPO_ROOT, Project, engine_bin
    from tests.runpod_control import ControlPlane

    if args.build:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            subprocess.run([str(REPO_ROOT / "infra" / "engine" / "build"), out], check=True)
        print(f"engine build (Go module cache warm): {time.perf_counter() - started:6.1f} s")
    bin_dir, why = engine_bin()
    if bin_dir is None:
        sys.exit(why)
    figures: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp, ControlPlane("bench-key") as control:
            project = Project(Path(tmp) / "project", control, bin_dir)
            os.environ.update(project.env)
            for name, seconds in one_round(project).items():
                figures.setdefault(name, []).append(seconds)
    for name, times in figures.items():
        median = statistics.median(times)
        line = f"{name:<15} median {median:6.2f} s over {len(times)} rounds"
        if name == "drift":
            line += f" ({median / DRIFT_TARGET_S:.2f}x the 15 s target for an unchanged stack)"
        print(line)


if __name__ == "__main__":
    main()
