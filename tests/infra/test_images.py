"""Each image's build context is what its Dockerfile copies and no more (its
`Dockerfile.dockerignore`, read with docker-py's implementation of Docker's ignore rules): a
change to the API rebuilds no GPU image, a change to one worker rebuilds neither the API nor the
other worker, and every file a Dockerfile copies is in its context."""

import re
import shlex
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from gpu_worker.common.worker_types import WORKER_PACKAGES
from infra.config import REPO_ROOT
from infra.workers import IMAGES


def context(image: str) -> set[str]:
    """The files of `image`'s build context."""
    dockerfile = IMAGES[image]
    ignore = (REPO_ROOT / f"{dockerfile}.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    sent = exclude_paths(str(REPO_ROOT), patterns, dockerfile=dockerfile)
    return {path for path in sent if (REPO_ROOT / path).is_file()}


def copied(image: str) -> list[str]:
    """The context paths `image`'s Dockerfile COPYs."""
    sources = []
    for line in (REPO_ROOT / IMAGES[image]).read_text().splitlines():
        if re.match(r"COPY\s", line):
            words = [w for w in shlex.split(line)[1:] if not w.startswith("--")]
            sources += words[:-1]
    return sources


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_every_file_a_dockerfile_copies_is_in_its_context(image):
    files = context(image)
    for source in copied(image):
        assert source in files or any(f.startswith(f"{source}/") for f in files), source


def test_the_api_image_takes_runpod_api_whole_and_nothing_of_infra():
    """Deployments call RunPod's REST API with the Pulumi providers' client (runpod_api, a
    package of its own, copied as a folder), and name what they make as the stack's destroy
    finds it; nothing of the Pulumi program."""
    files = context("api")
    package = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "runpod_api").rglob("*")}
    assert {f for f in files if f.startswith("runpod_api/")} == {
        f for f in package if (REPO_ROOT / f).is_file() and "__pycache__" not in f
    }
    assert not [f for f in files if f.startswith("infra/")]


ELSEWHERE = ("tests/", "bench/", "stacks/", "infra/")
WORKERS = tuple(f"gpu_worker/{package}/" for package in WORKER_PACKAGES)


def others(package: str) -> tuple[str, ...]:
    """The other workers' packages."""
    return tuple(path for path in WORKERS if path != f"gpu_worker/{package}/")


@pytest.mark.parametrize(
    ("image", "outside"),
    [
        ("api", (*WORKERS, *ELSEWHERE)),
        *(
            (package, ("app/", "runpod_api/", *others(package), *ELSEWHERE))
            for package in WORKER_PACKAGES
        ),
    ],
)
def test_a_change_elsewhere_rebuilds_nothing(image, outside):
    files = context(image)
    assert files, image
    assert not [f for f in files if f.startswith(outside) or f in ("README.md", "pyproject.toml")]
    assert not [f for f in files if "__pycache__" in Path(f).parts]
