"""The CLIP worker's settings, read once from its environment."""

from pydantic import Field

from gpu_worker.common.settings import FetchingModelSettings


class ClipSettings(FetchingModelSettings):
    model_name: str = "openai/clip-vit-base-patch32"
    max_batch: int = Field(32, ge=1, le=1024)
    max_text_chars: int = Field(2_000, ge=1)
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1)
