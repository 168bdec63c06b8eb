"""The real Pulumi engine on the engine tests' project against the local RunPod's control
plane: `pulumi up` creating the stack (2 templates, 2 endpoints), an `up` with nothing to do,
a `pulumi preview` with nothing to do, `python -m stacks drift` on the unchanged stack (against
its 15 s target) and `destroy`, each timed over a few rounds; with --before REV, the same steps
of release REV (default: the last one on RunPod's REST API v1) in a worktree of it, printed side
by side; with --build, also the engine's build from its Go modules (module cache warm; a fresh
machine also downloads them).

    .venv/bin/python bench/engine.py [--rounds 3] [--before [REV]] [--build]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DRIFT_TARGET_S = 15.0
LAST_V1_RELEASE = "3320370"  # the last commit on REST API v1 (and its own local RunPod)
# That release's tests import openapi-core (its spec checks); this one's do not.
V1_TEST_PACKAGES = ("openapi-core>=0.23",)


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
    workspace.stack("dev").preview(expect_no_changes=True)
    seconds["preview (no change)"] = time.perf_counter() - started
    started = time.perf_counter()
    drift = project.stacks("drift", "--stack", "dev")
    seconds["drift"] = time.perf_counter() - started
    assert drift.returncode == 0, drift.stdout + drift.stderr
    started = time.perf_counter()
    workspace.stack("dev").destroy()
    seconds["destroy"] = time.perf_counter() - started
    return seconds


def rounds(count: int) -> dict[str, list[float]]:
    """`one_round` `count` times, each on a fresh local RunPod and stack."""
    from tests.engine.harness import Project, engine_bin
    from tests.runpod_control import ControlPlane

    bin_dir, why = engine_bin()
    if bin_dir is None:
        sys.exit(why)
    figures: dict[str, list[float]] = {}
    for _ in range(count):
        with tempfile.TemporaryDirectory() as tmp, ControlPlane("bench-key") as control:
            project = Project(Path(tmp) / "project", control, bin_dir)
            os.environ.update(project.env)
            for name, seconds in one_round(project).items():
                figures.setdefault(name, []).append(seconds)
    return figures


def rounds_of(rev: str, count: int) -> dict[str, list[float]]:
    """The same rounds run by release `rev`'s code (its harness, providers and local RunPod),
    in a worktree of it, on this engine."""
    with tempfile.TemporaryDirectory() as tmp:
        tree, packages = Path(tmp) / "tree", Path(tmp) / "packages"
        git = shutil.which("git") or "git"
        subprocess.run([git, "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True)
        try:
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(packages)]
            subprocess.run([*pip, *V1_TEST_PACKAGES], check=True)
            env = os.environ | {
                "PYTHONPATH": os.pathsep.join([str(tree), str(packages)]),
                "PATH": os.pathsep.join([str(ROOT / ".pulumi" / "bin"), os.environ["PATH"]]),
            }
            code = (
                "import json, sys; sys.path.insert(0, sys.argv[1]); "
                "from bench_engine import rounds; print(json.dumps(rounds(int(sys.argv[2]))))"
            )
            (tree / "bench_engine.py").write_text(Path(__file__).read_text())
            done = subprocess.run(
                [sys.executable, "-c", code, str(tree), str(count)],
                cwd=tree,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            return json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            subprocess.run([git, "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", nargs="?", const=LAST_V1_RELEASE, help="a release to compare")
    parser.add_argument("--build", action="store_true", help="also time `infra/engine/build`")
    args = parser.parse_args()
    if args.build:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            subprocess.run([str(ROOT / "infra" / "engine" / "build"), out], check=True)
        print(f"engine build (Go module cache warm): {time.perf_counter() - started:6.1f} s")
    figures = rounds(args.rounds)
    before = rounds_of(args.before, args.rounds) if args.before else {}
    for name, times in figures.items():
        median = statistics.median(times)
        line = f"{name:<20} median {median:6.2f} s over {len(times)} rounds"
        if name in before:
            then = statistics.median(before[name])
            line += f" (release {args.before}: {then:6.2f} s; {median / then:.2f}x)"
        if name == "drift":
            line += f" ({median / DRIFT_TARGET_S:.2f}x the 15 s target for an unchanged stack)"
        print(line)


if __name__ == "__main__":
    main()
