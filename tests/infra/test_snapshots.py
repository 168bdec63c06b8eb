"""Golden inventories: what each stack declares, with the properties a reviewer reads. A change
to the graph shows up as a diff of tests/infra/snapshots/<stack>.json; after checking it, take
the new one with `UPDATE_SNAPSHOTS=1 make test` (or the same variable on pytest)."""

import json
import os
from pathlib import Path

import pytest

from infra.plan import inventory, run_program

SNAPSHOTS = Path(__file__).with_name("snapshots")


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-7"])
def test_inventory_matches_the_snapshot(stack):
    current = json.dumps(inventory(run_program(stack)), indent=1, sort_keys=True) + "\n"
    snapshot = SNAPSHOTS / f"{stack}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        snapshot.write_text(current)
    assert snapshot.is_file(), f"no snapshot for {stack}: run with UPDATE_SNAPSHOTS=1"
    assert current == snapshot.read_text(), f"{stack}'s inventory changed: review the diff"
