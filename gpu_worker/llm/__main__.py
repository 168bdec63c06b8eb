"""The LLM worker's entry point: fetch the weights and load the model, announcing each stage
(or why the model did not load), then serve RunPod jobs."""

from gpu_worker.common.ready import announce
from gpu_worker.common.serve import serve
from gpu_worker.llm.handler import worker

if __name__ == "__main__":  # vLLM starts child processes that import this module
    settings = worker.settings
    try:
        worker.load(downloaded=lambda: announce(settings, settings.model_id, "loading"))
    except Exception as exc:
        announce(settings, settings.model_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    announce(settings, settings.model_id)
    serve(worker.handle, settings)
