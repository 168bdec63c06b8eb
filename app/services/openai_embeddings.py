"""OpenAI's embeddings API on the CLIP model: texts and images (as `data:` or http(s) URLs) in
one `input`, embedded by the CLIP worker in one signed job per kind, answered in OpenAI's shape
(unit-length vectors, as floats or as base64 of little-endian float32)."""

import asyncio
import base64
import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from app.core.config import Settings
from app.core.errors import OpenAIError
from app.inference.base import InferenceBackend
from app.services.embedding import checked_vectors

DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,(?P<data>.+)", re.DOTALL)
Item = Annotated[str, StringConstraints(min_length=1)]


class ClipEmbeddingRequest(BaseModel):
    """OpenAI's embedding request, as the CLIP model can answer it."""

    model_config = ConfigDict(extra="forbid")
    input: Item | Annotated[list[Item], Field(min_length=1)]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def _request(body: dict[str, Any], settings: Settings) -> ClipEmbeddingRequest:
    try:
        request = ClipEmbeddingRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else None
        message = f"{field}: {error['msg']}" if field else error["msg"]
        if field == "input":
            message = "input must be a non-empty string or list of non-empty strings (texts, or "
            message += "images as data: or http(s) URLs)"
        raise OpenAIError(400, message, field) from exc
    if request.dimensions not in (None, settings.image_embedding_dim):
        raise OpenAIError(
            400,
            f"dimensions: {request.model} embeddings have {settings.image_embedding_dim} "
            "dimensions; leave dimensions out",
            "dimensions",
        )
    return request


def _image(item: str) -> str | None:
    """What the CLIP worker takes for an image item (its URL, or a data URL's base64), or None
    for a text."""
    if item.startswith(("http://", "https://")):
        return item
    if item.startswith("data:"):
        if (match := DATA_URL.fullmatch(item)) is None:
            raise OpenAIError(
                400, "input: a data URL must be data:image/<type>;base64,<data>", "input"
            )
        return match["data"]
    return None


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


async def clip_embeddings(
    backend: InferenceBackend, settings: Settings, body: dict[str, Any], request_id: str
) -> dict[str, Any]:
    """OpenAI's embedding response for `body`, whose `model` is the CLIP model."""
    request = _request(body, settings)
    items = [request.input] if isinstance(request.input, str) else request.input
    images = [_image(item) for item in items]
    batches = {  # the worker's field -> [(index in input, what the worker takes)]
        "texts": [(i, item) for i, item in enumerate(items) if images[i] is None],
        "images": [(i, image) for i, image in enumerate(images) if image is not None],
    }

    async def embed(field: str, values: list[str]) -> tuple[list[list[float]], dict[str, Any]]:
        job = {field: values, "normalize": True, "request_id": request_id}
        result = await backend.run("clip", job, request_id)
        dim = settings.image_embedding_dim
        return checked_vectors(
            result, "embeddings", len(values), dim, "IMAGE_EMBEDDING_DIM"
        ), result

    asked = {field: batch for field, batch in batches.items() if batch}
    answers = await asyncio.gather(
        *(embed(field, [value for _, value in batch]) for field, batch in asked.items())
    )
    vectors: dict[int, list[float]] = {}
    for batch, (batch_vectors, _) in zip(asked.values(), answers, strict=True):
        vectors.update(zip((i for i, _ in batch), batch_vectors, strict=True))
    tokens = sum(result.get("usage", {}).get("prompt_tokens", 0) for _, result in answers)
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": _encoded(vectors[i], request.encoding_format),
            }
            for i in range(len(items))
        ],
        "model": answers[0][1].get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
