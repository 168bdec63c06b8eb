"""The CLIP worker's entry point: load the model, announce readiness, serve RunPod jobs."""

from gpu_worker.clip.handler import embedder, handle, settings
from gpu_worker.common.ready import announce_ready
from gpu_worker.common.serve import serve

announce_ready(settings, embedder().name)
serve(handle, settings)
