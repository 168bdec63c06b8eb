"""Inference behind one interface: `InferenceBackend`, served by RunPod or in-process."""

from app.core.config import Settings
from app.inference.base import InferenceBackend

__all__ = ["InferenceBackend", "make_backend"]


def make_backend(settings: Settings) -> InferenceBackend:
    """The backend INFERENCE_BACKEND names."""
    if settings.inference_backend == "runpod":
        from app.inference.runpod import RunPodBackend

        return RunPodBackend.from_settings(settings)
    from app.inference.local import LocalBackend

    return LocalBackend.from_settings(settings)
