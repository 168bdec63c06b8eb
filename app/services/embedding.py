"""Embeddings through the workers, checked against the sizes the tables hold: text in
batches from the embed worker, images and image-search queries from the CLIP worker
(the backend signs them)."""

import asyncio
from typing import Any

from app.core.config import Settings
from app.core.errors import WorkerFailed
from app.inference.base import InferenceBackend

# Embedding jobs of one request in flight at once (each is a batch of EMBED_BATCH_SIZE texts).
CONCURRENT_BATCHES = 4


def checked_vectors(
    result: dict[str, Any], key: str, count: int, dim: int, setting: str
) -> list[list[float]]:
    """`count` vectors of size `dim` from a worker's result (`embeddings`, or `embedding`)."""
    vectors = result.get(key)
    if key == "embedding":
        vectors = [vectors]
    if not isinstance(vectors, list) or len(vectors) != count:
        raise WorkerFailed(f"the worker returned {key} of the wrong shape")
    for vector in vectors:
        if not isinstance(vector, list) or len(vector) != dim:
            size = len(vector) if isinstance(vector, list) else "no"
            raise WorkerFailed(
                f"the embedding model returned {size}-dimensional vectors but {setting} is {dim}: "
                f"set {setting} to the model's size"
            )
    return vectors


def batched(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def embed_job(batch: list[str]) -> dict[str, Any]:
    """The embed worker's input for a batch of texts (unit-length vectors)."""
    return {"input": batch, "normalize": True}


async def embed_texts(
    backend: InferenceBackend, settings: Settings, texts: list[str], request_id: str
) -> list[list[float]]:
    """Unit-length text embeddings, one per text, in batches of EMBED_BATCH_SIZE."""
    batches = batched(texts, settings.embed_batch_size)
    slots = asyncio.Semaphore(CONCURRENT_BATCHES)

    async def embed(index: int, batch: list[str]) -> list[list[float]]:
        async with slots:
            result = await backend.run("embed", embed_job(batch), f"{request_id}-{index}")
        return checked_vectors(
            result, "embeddings", len(batch), settings.text_embedding_dim, "TEXT_EMBEDDING_DIM"
        )

    results = await asyncio.gather(*(embed(i, batch) for i, batch in enumerate(batches)))
    return [vector for batch in results for vector in batch]


async def embed_clip(
    backend: InferenceBackend, settings: Settings, field: str, value: str, request_id: str
) -> list[float]:
    """The unit-length CLIP embedding of an image URL (`image_url`) or a text (`text`)."""
    job = {field: value, "normalize": True, "request_id": request_id}
    result = await backend.run("clip", job, request_id)
    dim = settings.image_embedding_dim
    return checked_vectors(result, "embedding", 1, dim, "IMAGE_EMBEDDING_DIM")[0]
