"""The image-generation worker's entry point: load the pipeline, announce readiness, serve jobs."""

from gpu_worker.common.ready import announce
from gpu_worker.common.serve import serve
from gpu_worker.imagegen.handler import worker

worker.load()
announce(worker.settings, worker.settings.model_id)
serve(worker.handle, worker.settings)
