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


def test_the_api_image_takes_only_the_runpod_client_from_infra():
    """Deployments call RunPod's REST API with the Pulumi providers' client, and name what they
    make as the stack's destroy finds it; nothing else."""
    runpod = {"__init__.py", "client.py", "names.py"}
    runpod |= {"rest-v1-openapi.json", "rest-v2-secrets-openapi.json"}
    expected = {"infra/__init__.py"} | {f"infra/runpod/{name}" for name in runpod}
    assert {f for f in context("api") if f.startswith("infra/")} == expected


ELSEWHERE = ("tests/", "bench/", "stacks/", "gpu_worker/emulator/")
WORKERS = tuple(f"gpu_worker/{package}/" for package in WORKER_PACKAGES)


def others(package: str) -> tuple[str, ...]:
    """The other workers' packages."""
    return tuple(path for path in WORKERS if path != f"gpu_worker/{package}/")


@pytest.mark.parametrize(
    ("image", "outside"),
    [
        ("api", (*WORKERS, *ELSEWHERE)),
        *(
            (package, ("app/", "infra/", *others(package), *ELSEWHERE))
            for package in WORKER_PACKAGES
        ),
    ],
)
def test_a_change_elsewhere_rebuilds_nothing(image, outside):
    files = context(image)
    assert files, image
    assert not [f for f in files if f.startswith(outside) or f in ("README.md", "pyproject.toml")]
    assert not [f for f in files if "__pycache__" in Path(f).parts]
