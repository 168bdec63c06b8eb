"""The LLM worker's entry point: start the engine, announce readiness (or why the model did not
load), serve RunPod jobs."""

from gpu_worker.common.ready import announce
from gpu_worker.common.serve import serve
from gpu_worker.llm.handler import worker

if __name__ == "__main__":  # vLLM starts child processes that import this module
    try:
        model_id = worker.engine.model_id  # loads the model
    except Exception as exc:
        announce(worker.settings, worker.settings.model_name, f"{type(exc).__name__}: {exc}")
        raise
    announce(worker.settings, model_id)
    serve(worker.handle, worker.settings)
