"""The image-generation worker's settings, read once from its environment."""

from typing import Literal

from pydantic import Field

from gpu_worker.common.settings import FetchingModelSettings


class ImagegenSettings(FetchingModelSettings):
    # A diffusers text-to-image repository (FLUX, SDXL, SD 1.x/2.x): a hub id or a directory.
    model_name: str = "stabilityai/sdxl-turbo"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # "auto": bfloat16 for FLUX and float16 for Stable Diffusion on a GPU, float32 on the CPU.
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    # Memory options for a card smaller than the model: weights kept in CPU memory, each part
    # moved to the GPU while it runs (accelerate's offload); attention computed in slices.
    cpu_offload: bool = False
    attention_slicing: bool = False
    # The model's own defaults when a request gives none (unset: its family's, see pipeline.py).
    default_steps: int | None = Field(None, ge=1, le=200)
    default_guidance: float | None = Field(None, ge=0, le=30)
    max_concurrency: int = Field(1, ge=1, le=16)  # one job at a time: a job fills the GPU
    max_images: int = Field(4, ge=1, le=16)  # n per request
    max_steps: int = Field(100, ge=1, le=500)
    max_prompt_chars: int = Field(2_000, ge=1)
    # Images go to the upload URLs a request gives; without them they are returned as base64,
    # up to this many bytes in all.
    max_inline_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    upload_timeout_seconds: float = Field(30.0, gt=0)
