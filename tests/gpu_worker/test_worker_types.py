"""Every worker type declared in gpu_worker/common/worker_types.py has what the table says the
rest of the system finds by it: a package `python -m` runs, a Dockerfile with its build
context, a local-mode loader, and the API settings named after it."""

import importlib.util
import pkgutil

import pytest

from app.core.config import REPO_ROOT, Settings
from gpu_worker.common.worker_types import WORKER_TYPES


@pytest.mark.parametrize("name", WORKER_TYPES)
def test_a_worker_type_has_what_it_declares(name):
    worker = WORKER_TYPES[name]
    assert importlib.util.find_spec(f"{worker.module}.__main__") is not None
    assert (REPO_ROOT / worker.dockerfile).is_file()
    assert (REPO_ROOT / f"{worker.dockerfile}.dockerignore").is_file()
    assert callable(pkgutil.resolve_name(worker.local_loader))
    settings = Settings.model_fields
    assert worker.endpoint_variable.lower() in settings
    assert worker.model_setting is None or worker.model_setting.lower() in settings


def test_the_api_reaches_each_type_at_its_endpoint():
    settings = Settings(_env_file=None, transcribe_endpoint_id="ep-123")
    assert settings.endpoint_ids() == {
        "llm": "llm",
        "clip": "clip",
        "embed": "embed",
        "transcribe": "ep-123",
        "imagegen": "imagegen",
    }
