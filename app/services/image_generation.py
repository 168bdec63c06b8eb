"""Text to images, as OpenAI's images API has it: the request, the imagegen worker's job (its
images uploaded straight to storage through signed URLs), the images kept as the tenant's
(listed, deleted and retained as uploaded ones; CLIP-embedded, so search finds them, when
`embed` asks) and the answer."""

import asyncio
import base64
import contextlib
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.errors import NotFound, WorkerFailed
from app.inference.base import InferenceBackend
from app.inference.limited import TenantBackend
from app.models import Image
from app.schemas import Strict
from app.services.deployment_runner import DeploymentRunner
from app.services.embedding import embed_clip
from app.services.uploads import SIGNED_URL_TTL_S
from app.storage import Storage, StorageError

OUTPUT_TYPES = {"png": ("image/png", ".png"), "webp": ("image/webp", ".webp"),
                "jpeg": ("image/jpeg", ".jpg")}  # fmt: skip
# OpenAI's qualities (dall-e-3's standard and hd, gpt-image's low, medium and high) as the
# worker's: half, one or two times the model's default denoising steps.
QUALITY_STEPS = {"low": "low", "medium": None, "standard": None, "auto": None, "high": "high",
                 "hd": "high"}  # fmt: skip
URL_TTL_S = 3600  # how long a `url` in the answer reads the image, as OpenAI's
MAX_IMAGES = 10  # OpenAI's bound on n; the worker's own (MAX_IMAGES) may be lower

Prompt = Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=r"\S")]


class ImageGenerationIn(Strict):
    """OpenAI's image generation request (`style`, `background` and `moderation` are
    gpt-image and dall-e-3 options this API does not have), and Tandem's own options."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"prompt": "a red fox in the snow, photo", "n": 1, "size": "512x512"}]
        }
    )

    prompt: Prompt
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="IMAGEGEN_MODEL (the default)"
    )
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    size: str = Field(
        "auto",
        pattern=r"^(auto|[1-9][0-9]{1,3}x[1-9][0-9]{1,3})$",
        description="WIDTHxHEIGHT, within the model's family's sizes; auto: its native size",
    )
    quality: Literal["auto", "low", "medium", "high", "standard", "hd"] = Field(
        "auto", description="low: half the model's default steps; high and hd: twice"
    )
    response_format: Literal["url", "b64_json"] = "url"
    output_format: Literal["png", "webp", "jpeg"] = "png"
    user: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None, description="your end user's id, as OpenAI's (not used)"
    )
    negative_prompt: Prompt | None = Field(None, description="what not to draw (not FLUX)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="image i gets seed + i")
    steps: int | None = Field(None, ge=1, le=500, description="denoising steps (not with quality)")
    guidance: float | None = Field(None, ge=0, le=30, description="classifier-free guidance")
    embed: bool = Field(False, description="CLIP-embed the images so search finds them")

    @model_validator(mode="after")
    def _steps_or_quality(self) -> "ImageGenerationIn":
        if self.steps is not None and self.quality != "auto":
            raise ValueError("give steps or quality, not both")
        return self

    @property
    def dimensions(self) -> tuple[int, int] | None:
        if self.size == "auto":
            return None
        width, height = self.size.split("x")
        return int(width), int(height)


def generation_job(
    body: ImageGenerationIn, uploads: dict[str, list[str]], request_id: str
) -> dict[str, Any]:
    """The imagegen worker's input (the backend signs it as it sends it). `uploads`:
    `upload_urls`, or a job part's `upload_keys`."""
    job: dict[str, Any] = {
        "prompt": body.prompt,
        "n": body.n,
        "output_format": body.output_format,
        **uploads,
        "request_id": request_id,
    }
    if (dimensions := body.dimensions) is not None:
        job["width"], job["height"] = dimensions
    if (quality := QUALITY_STEPS[body.quality]) is not None:
        job["quality"] = quality
    for name in ("negative_prompt", "seed", "steps", "guidance"):
        if (value := getattr(body, name)) is not None:
            job[name] = value
    return job


def is_stack_model(settings: Settings, model: str | None) -> bool:
    """Whether `model` names the stack's image model (IMAGEGEN_MODEL, the default)."""
    return model is None or model == settings.imagegen_model


async def image_backend(
    runner: DeploymentRunner,
    backend: TenantBackend,
    settings: Settings,
    tenant: str,
    model: str | None,
) -> TenantBackend:
    """What generates images of `model`: the stack's imagegen worker, or the tenant's
    deployment of that name (409 while it is not ready)."""
    if is_stack_model(settings, model):
        return backend
    deployed = await runner.backend_for(tenant, model, ("image",))
    if deployed is None:
        raise NotFound(
            f"model: {model!r} is neither {settings.imagegen_model!r} (the default) nor a "
            "deployment of yours"
        )
    return backend.via(deployed)


async def generate_images(
    engine: AsyncEngine,
    storage: Storage,
    backend: InferenceBackend,
    settings: Settings,
    tenant: str,
    body: ImageGenerationIn,
    request_id: str,
) -> dict[str, Any]:
    """The answer to `body` by `backend` (image_backend): the images made, stored and kept
    as the tenant's."""
    content_type = OUTPUT_TYPES[body.output_format][0]
    keys = image_keys(body)
    urls = [
        await asyncio.to_thread(storage.signed_upload_url, key, SIGNED_URL_TTL_S, content_type)
        for key in keys
    ]
    try:
        job = generation_job(body, {"upload_urls": urls}, request_id)
        result = await backend.run("imagegen", job, request_id)
        checked_images(result, body.n)
        embeddings: list[list[float] | None] = [None] * body.n
        if body.embed:
            embeddings = [
                await _embedding(storage, backend, settings, key, request_id) for key in keys
            ]
        rows = image_rows(tenant, body, result, keys, embeddings)
        async with engine.begin() as conn:
            await conn.execute(insert(Image), rows)
    except BaseException:
        await _delete(storage, keys)  # what the worker uploaded before the job failed
        raise
    answer = generation_answer(body, result, rows)
    for datum, row in zip(answer["data"], rows, strict=True):
        datum |= await _content(storage, body, row["object_key"])
    return answer


def image_keys(body: ImageGenerationIn) -> list[str]:
    """Where a request's images are stored."""
    extension = OUTPUT_TYPES[body.output_format][1]
    return [f"images/{uuid.uuid4()}{extension}" for _ in range(body.n)]


def checked_images(result: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The `n` images of the worker's result."""
    images = result.get("images")
    if not isinstance(images, list) or len(images) != n:
        raise WorkerFailed("the worker returned images of the wrong shape")
    if not all(isinstance(image, dict) and isinstance(image.get("bytes"), int) for image in images):
        raise WorkerFailed("the worker returned images of the wrong shape")
    return images


async def _embedding(
    storage: Storage, backend: InferenceBackend, settings: Settings, key: str, request_id: str
) -> list[float]:
    url = await asyncio.to_thread(storage.signed_url, key, SIGNED_URL_TTL_S)
    return await embed_clip(backend, settings, "image_url", url, request_id)


def image_rows(
    tenant: str,
    body: ImageGenerationIn,
    result: dict[str, Any],
    keys: list[str],
    embeddings: list[list[float] | None],
) -> list[dict[str, Any]]:
    """The `images` rows of the generated images (stored at `keys`)."""
    generated = {
        "prompt": body.prompt,
        "model": result.get("model"),
        **{name: result.get(name) for name in ("width", "height", "steps", "guidance")},
    }
    if body.negative_prompt is not None:
        generated["negative_prompt"] = body.negative_prompt
    images = checked_images(result, body.n)
    return [
        {
            "id": (image_id := uuid.uuid4()),
            "tenant": tenant,
            "source_id": f"generated/{image_id}",
            "title": body.prompt[:300],
            "content_type": OUTPUT_TYPES[body.output_format][0],
            "object_key": key,
            "size_bytes": image["bytes"],
            "metadata": {"generated": generated | {"seed": image.get("seed")}},
            "embedding": embedding,
        }
        for key, image, embedding in zip(keys, images, embeddings, strict=True)
    ]


def generation_answer(
    body: ImageGenerationIn, result: dict[str, Any], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """OpenAI's images response, each image with its id among the tenant's images and its
    seed (the sync answer adds its `url` or `b64_json`)."""
    return {
        "created": int(time.time()),
        "data": [
            {"id": str(row["id"]), "seed": row["metadata"]["generated"]["seed"]} for row in rows
        ],
        "model": result.get("model"),
        "size": f"{result.get('width')}x{result.get('height')}",
        "quality": body.quality,
        "output_format": body.output_format,
    }


async def _content(storage: Storage, body: ImageGenerationIn, key: str) -> dict[str, str]:
    """An image of the answer: OpenAI's `url` (an hour) or `b64_json`."""
    if body.response_format == "url":
        return {"url": await asyncio.to_thread(storage.signed_url, key, URL_TTL_S)}
    data = await asyncio.to_thread(storage.get, key)
    return {"b64_json": base64.b64encode(data).decode()}


async def _delete(storage: Storage, keys: list[str]) -> None:
    for key in keys:
        with contextlib.suppress(StorageError):
            await asyncio.to_thread(storage.delete, key)
