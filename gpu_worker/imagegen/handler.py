"""The image-generation worker's handler: text to images with a diffusers pipeline, HMAC-checked.

Input: `prompt`, `negative_prompt` (not FLUX), `width` and `height` (both or neither: the model's
native size), `steps` or `quality` (low | medium | high: half, one or two times the model's
default steps), `guidance`, `seed` (image i gets seed + i; unset: random), `n`, `output_format`
(png | webp | jpeg), `upload_urls` (one signed PUT URL per image: the images go there; without
them they come back as base64, up to MAX_INLINE_BYTES), `request_id` and, when the worker has
SIGNING_KEY, `auth: {ts, sig}` over the whole input.

Output: `images` (each `index`, `seed`, `content_type`, `bytes`, and `b64_json` when not
uploaded), `model`, `family`, `width`, `height`, `steps`, `guidance`, `timings`. A size the
model's family does not make, too many images or steps, an empty prompt are refusals
(gpu_worker.common.refusal) naming what works; a pipeline that fails (CUDA out of memory) fails
the job and asks RunPod for a fresh worker.
"""

import asyncio
import base64
import io
import random
import threading
import time
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gpu_worker.common.fetch import UploadFailed
from gpu_worker.common.refusal import Refused, TooLarge, describe, input_object, request_id_of
from gpu_worker.common.signing import Unauthenticated, check_signature
from gpu_worker.imagegen.pipeline import Family, Sizes, load_pipeline
from gpu_worker.imagegen.settings import ImagegenSettings

CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
QUALITY_STEPS = {"low": 0.5, "medium": 1.0, "high": 2.0}  # times the model's default steps
MAX_SEED = 2**32 - 1


class ImagegenInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    negative_prompt: str | None = None
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    quality: Literal["low", "medium", "high"] | None = None
    guidance: float | None = Field(None, ge=0, le=30)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    n: int = Field(1, ge=1)
    output_format: Literal["png", "webp", "jpeg"] = "png"
    upload_urls: list[str] | None = None
    request_id: str | None = None
    auth: dict[str, Any] | None = None

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _text(cls, text: str | None) -> str | None:
        if text is not None and "\x00" in text:
            raise ValueError("holds a NUL character")
        if text is not None and not text.strip():
            raise ValueError("is blank")
        return text

    @model_validator(mode="after")
    def _consistent(self) -> "ImagegenInput":
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        if self.steps is not None and self.quality is not None:
            raise ValueError("give steps or quality, not both")
        if self.upload_urls is not None and len(self.upload_urls) != self.n:
            raise ValueError(f"upload_urls holds {len(self.upload_urls)} URLs for n={self.n}")
        return self


class ImagegenWorker:
    """One text-to-image pipeline answering jobs, one at a time."""

    def __init__(self, settings: ImagegenSettings) -> None:
        self.settings = settings
        self._loaded: tuple[Any, Family, Sizes, str] | None = None
        self._lock = threading.Lock()
        self._running = threading.Lock()  # a pipeline runs one job at a time

    @property
    def pipeline(self) -> tuple[Any, Family, Sizes, str]:
        """(pipeline, family, sizes, device), loaded on first use (__main__ loads at start-up)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = load_pipeline(self.settings)
            return self._loaded

    def load(self) -> None:
        """Load the pipeline now rather than on the first job."""
        self.pipeline  # noqa: B018

    def shutdown(self) -> None:
        with self._lock:
            self._loaded = None

    def _plan(self, request: ImagegenInput) -> dict[str, Any]:
        """The pipeline's arguments for `request`, or a refusal naming what would work."""
        settings = self.settings
        pipe, family, sizes, _device = self.pipeline
        if len(request.prompt) > settings.max_prompt_chars:
            raise TooLarge(f"prompt is longer than {settings.max_prompt_chars} characters")
        if request.n > settings.max_images:
            raise TooLarge(f"n: at most {settings.max_images} images per request")
        if request.negative_prompt is not None and not family.negative_prompt:
            raise Refused(f"negative_prompt: {family.name} models take none")
        width = request.width or sizes.native
        height = request.height or sizes.native
        if (why := sizes.check(width, height)) is not None:
            raise Refused(f"size {width}x{height}: {why} ({family.name}: {sizes.describe()})")
        default_steps, default_guidance = family.defaults(pipe)
        default_steps = settings.default_steps or default_steps
        scale = QUALITY_STEPS[request.quality or "medium"]
        steps = request.steps or max(1, round(default_steps * scale))
        if steps > settings.max_steps:
            raise TooLarge(f"steps: at most {settings.max_steps}")
        guidance = request.guidance
        if guidance is None:
            guidance = settings.default_guidance
        if guidance is None:
            guidance = default_guidance
        return {"width": width, "height": height, "steps": steps, "guidance": guidance}

    def _generate(self, request: ImagegenInput, plan: dict[str, Any], seed: int) -> list[Any]:
        import torch

        pipe, _family, _sizes, device = self.pipeline
        generators = [torch.Generator(device).manual_seed(seed + i) for i in range(request.n)]
        arguments: dict[str, Any] = {
            "prompt": request.prompt,
            "width": plan["width"],
            "height": plan["height"],
            "num_inference_steps": plan["steps"],
            "guidance_scale": plan["guidance"],
            "num_images_per_prompt": request.n,
            "generator": generators,
        }
        if request.negative_prompt is not None:
            arguments["negative_prompt"] = request.negative_prompt
        with self._running:
            return pipe(**arguments).images

    def _deliver(self, request: ImagegenInput, images: list[Any], seed: int) -> list[dict]:
        """Each image encoded, then uploaded or inlined."""
        content_type = CONTENT_TYPES[request.output_format]
        encoded = [_encode(image, request.output_format) for image in images]
        if request.upload_urls is None and sum(map(len, encoded)) > self.settings.max_inline_bytes:
            raise TooLarge(
                f"the images are over {self.settings.max_inline_bytes} bytes: give upload_urls"
            )
        delivered = []
        for index, data in enumerate(encoded):
            image: dict[str, Any] = {
                "index": index,
                "seed": (seed + index) % (MAX_SEED + 1),
                "content_type": content_type,
                "bytes": len(data),
            }
            if request.upload_urls is None:
                image["b64_json"] = base64.b64encode(data).decode()
            else:
                self.settings.upload(
                    request.upload_urls[index],
                    data,
                    content_type,
                    self.settings.upload_timeout_seconds,
                )
            delivered.append(image)
        return delivered

    async def handle(self, job: dict[str, Any]) -> dict[str, Any]:
        """Answer one RunPod job (see the module docstring)."""
        started = time.perf_counter()
        request_id = request_id_of(job)
        try:
            job_input = input_object(job)
            request = ImagegenInput.model_validate(job_input)
            check_signature(self.settings.signing_key, job_input)
            plan = self._plan(request)
            seed = request.seed if request.seed is not None else random.randint(0, MAX_SEED)
            images = await asyncio.to_thread(self._generate, request, plan, seed)
            generated = time.perf_counter()
            delivered = await asyncio.to_thread(self._deliver, request, images, seed)
        except ValidationError as exc:
            return Refused(describe(exc)).report(request_id)
        except Refused as exc:
            return exc.report(request_id)
        except (Unauthenticated, UploadFailed) as exc:
            return {"error": str(exc), "request_id": request_id}
        except RuntimeError as exc:  # torch's: CUDA out of memory, a device failure
            return {
                "error": f"the image model failed: {exc}",
                "request_id": request_id,
                "refresh_worker": True,
            }
        done = time.perf_counter()
        _pipe, family, _sizes, _device = self.pipeline
        return {
            "request_id": request_id,
            "images": delivered,
            "model": self.settings.model_id,
            "family": family.name,
            **plan,
            "timings": {
                "inference_ms": round((generated - started) * 1000, 3),
                "delivery_ms": round((done - generated) * 1000, 3),
                "total_ms": round((done - started) * 1000, 3),
            },
        }


def _encode(image: Any, output_format: str) -> bytes:
    buffer = io.BytesIO()
    if output_format == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format=output_format.upper())
    return buffer.getvalue()


worker = ImagegenWorker(ImagegenSettings())
handle = worker.handle
