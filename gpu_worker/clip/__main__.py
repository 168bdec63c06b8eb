"""The CLIP worker's entry point: load the model, announce readiness, serve RunPod jobs."""

from gpu_worker.clip.handler import worker
from gpu_worker.common.ready import announce
from gpu_worker.common.serve import serve

announce(worker.settings, worker.embedder.name)
serve(worker.handle, worker.settings)
