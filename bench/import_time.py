"""Cold-start cost of the API image: how long `import app.main` takes in a fresh interpreter
(median of several runs, an empty interpreter measured beside it), and proof that the import
pulls in no torch or vLLM.

    .venv/bin/python bench/import_time.py [--runs 7]
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "vllm", "transformers")
PROBE = "import sys, app.main; print(','.join(m for m in {heavy!r} if m in sys.modules))"


def run_ms(code: str) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return (time.perf_counter() - started) * 1000, out.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    probe = PROBE.format(heavy=HEAVY)
    empty, app, loaded = [], [], set()
    for _ in range(args.runs):
        empty.append(run_ms("pass")[0])
        elapsed, out = run_ms(probe)
        app.append(elapsed)
        loaded.update(filter(None, out.split(",")))
    empty_ms, app_ms = statistics.median(empty), statistics.median(app)
    print(f"empty interpreter       median {empty_ms:7.1f} ms")
    print(f"import app.main         median {app_ms:7.1f} ms")
    print(
        f"app.main import cost: {(app_ms - empty_ms) / 1000:.3f} s (target < 1.5 s); "
        f"{app_ms / empty_ms:.1f}x an empty interpreter"
    )
    print(f"heavy modules imported: {sorted(loaded) or 'none'}")
    if loaded:
        sys.exit(1)


if __name__ == "__main__":
    main()
