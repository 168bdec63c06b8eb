"""The LLM worker's entry point: start the engine, announce readiness, serve RunPod jobs."""

from gpu_worker.common.ready import announce_ready
from gpu_worker.common.serve import serve
from gpu_worker.llm.handler import worker

if __name__ == "__main__":  # vLLM starts child processes that import this module
    announce_ready(worker.settings, worker.engine.model_id)
    serve(worker.handle, worker.settings)
