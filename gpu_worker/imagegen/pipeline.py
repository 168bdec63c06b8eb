"""Text-to-image pipelines: loaded with diffusers' AutoPipelineForText2Image, told apart by
family (FLUX, SDXL, Stable Diffusion 1.x/2.x), each with the sizes and defaults it was made for."""

from dataclasses import dataclass
from typing import Any

from gpu_worker.imagegen.settings import ImagegenSettings


@dataclass(frozen=True)
class Family:
    name: str
    steps: int  # default denoising steps
    guidance: float  # default classifier-free guidance scale
    negative_prompt: bool  # whether it takes one

    def defaults(self, pipe: Any) -> tuple[int, float]:
        """(steps, guidance) for `pipe`: FLUX.1-dev (guidance-distilled) differs from schnell."""
        if self.name == "flux" and pipe.transformer.config.guidance_embeds:
            return 28, 3.5
        return self.steps, self.guidance


# By diffusers pipeline class. FLUX.1-schnell's defaults (4 steps, no guidance); FLUX.1-dev's
# are in Family.defaults.
FAMILIES = {
    "FluxPipeline": Family("flux", 4, 0.0, negative_prompt=False),
    "StableDiffusionXLPipeline": Family("sdxl", 30, 5.0, negative_prompt=True),
    "StableDiffusionPipeline": Family("sd", 30, 7.5, negative_prompt=True),
}


@dataclass(frozen=True)
class Sizes:
    """The sizes a model makes well: sides within half and twice its native resolution, each a
    multiple of its latent grid, at most twice its native pixel count."""

    native: int
    multiple: int

    def check(self, width: int, height: int) -> str | None:
        """Why `width`x`height` does not fit, or None."""
        low, high = self.native // 2, self.native * 2
        if not (low <= width <= high and low <= height <= high):
            return f"width and height must be {low} to {high}"
        if width % self.multiple or height % self.multiple:
            return f"width and height must be multiples of {self.multiple}"
        if width * height > 2 * self.native**2:
            return f"width x height must be at most {2 * self.native**2} pixels"
        return None

    def describe(self) -> str:
        return (
            f"{self.native}x{self.native} native; sides {self.native // 2}-{self.native * 2}, "
            f"multiples of {self.multiple}, at most {2 * self.native**2} pixels"
        )


def family_of(pipe: Any) -> Family:
    name = type(pipe).__name__
    if name not in FAMILIES:
        raise ValueError(
            f"{name} is not a text-to-image family this worker serves: use a FLUX, SDXL or "
            "Stable Diffusion 1.x/2.x repository"
        )
    return FAMILIES[name]


def sizes_of(pipe: Any, family: Family) -> Sizes:
    """The model's sizes: its native resolution is its latent sample size times the VAE's
    scale; FLUX packs latents in 2x2 patches, so its sides are multiples of twice the scale."""
    sample = getattr(pipe, "default_sample_size", None) or pipe.unet.config.sample_size
    scale = pipe.vae_scale_factor
    return Sizes(sample * scale, scale * 2 if family.name == "flux" else scale)


def resolve_device(settings: ImagegenSettings) -> str:
    import torch

    if settings.device != "auto":
        if settings.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("DEVICE=cuda but no CUDA device is visible")
        return settings.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_pipeline(settings: ImagegenSettings) -> tuple[Any, Family, Sizes, str]:
    """(pipeline, family, sizes, device) of MODEL_NAME, with the memory options applied."""
    import torch
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    device = resolve_device(settings)
    if settings.cpu_offload and device != "cuda":
        raise ValueError("CPU_OFFLOAD needs a CUDA device")
    if device == "cpu" and settings.dtype == "float16":
        raise ValueError("DTYPE=float16 does not run on the CPU: use float32 or bfloat16")
    config = DiffusionPipeline.load_config(settings.model_name)
    family = FAMILIES.get(config.get("_class_name", ""))
    if settings.dtype != "auto":
        dtype = getattr(torch, settings.dtype)
    elif device == "cpu":
        dtype = torch.float32
    else:
        dtype = torch.bfloat16 if family is not None and family.name == "flux" else torch.float16
    pipe = AutoPipelineForText2Image.from_pretrained(settings.model_name, dtype=dtype)
    family = family_of(pipe)
    if settings.cpu_offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    pipe.set_progress_bar_config(disable=True)
    return pipe, family, sizes_of(pipe, family), device
