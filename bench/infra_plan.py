"""How long the Pulumi program takes under mocks (the offline plan and the infra tests), per
stack, against the 5 s target. The first run in a process pays the imports (pulumi_gcp is
large), so both the cold and the warm figure are printed.

    .venv/bin/python bench/infra_plan.py [--rounds 5]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    from infra.plan import run_program

    run_program("dev")
    cold = time.perf_counter() - started
    print(
        f"first plan in a fresh process (imports included): {cold:6.2f} s "
        f"({cold / TARGET_S:.2f}x the 5 s target)"
    )
    for stack in ("dev", "prod", "pr-7"):
        times = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            resources = run_program(stack)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(
            f"{stack:<5} {len(resources):3d} resources: median {median:6.3f} s "
            f"({median / TARGET_S:.3f}x the 5 s target)"
        )


if __name__ == "__main__":
    main()
