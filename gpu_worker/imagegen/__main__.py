"""The image-generation worker's entry point: load the pipeline (fetching its weights first when
they are not here), announce readiness (or why it did not load), then serve RunPod jobs."""

from gpu_worker.common.ready import announce
from gpu_worker.common.serve import serve
from gpu_worker.imagegen.handler import worker

settings = worker.settings
try:
    worker.load()
except Exception as exc:
    announce(settings, settings.model_id, "failed", f"{type(exc).__name__}: {exc}")
    raise
announce(settings, settings.model_id)
serve(worker.handle, settings)
