"""How vLLM runs on these CPUs (shared/ENVIRONMENT.md): app.inference.local_models.CPU_ENV,
float32, eager mode, a small memory fraction and a 1 GiB KV cache."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.inference.local_models import cpu_options
from gpu_worker.llm.handler import LlmWorker
from gpu_worker.llm.settings import LlmSettings


def cpu_settings(model: Path | str, **overrides) -> LlmSettings:
    values = {"model_name": str(model), **cpu_options(), "max_concurrency": 16} | overrides
    return LlmSettings(**values)


@contextmanager
def running_llm_worker(settings: LlmSettings) -> Iterator[LlmWorker]:
    """An LLM worker with its engine started on `settings`, shut down afterwards."""
    worker = LlmWorker(settings)
    worker.load()
    try:
        yield worker
    finally:
        worker.shutdown()
