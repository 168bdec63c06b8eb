"""The transcription worker's entry point: load the model, announce readiness, serve RunPod jobs."""

from gpu_worker.common.ready import announce
from gpu_worker.common.serve import serve
from gpu_worker.transcribe.handler import worker

worker.load()
announce(worker.settings, worker.settings.model_id)
serve(worker.handle, worker.settings)
