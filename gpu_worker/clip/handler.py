"""The CLIP worker's handler: image and text embeddings, one or a batch, HMAC-checked.

Input: one of `text`, `image_url`, `image_base64`, `texts: [str]` or `images: [str]` (each an
http(s) URL or base64 data), plus `normalize` (default true), `request_id` and, when the
worker has SIGNING_KEY, `auth: {ts, sig}` over the whole input. Every failure is
`{"error", "request_id"}` and the worker goes on to the next job; an input the client must fix
(undecodable, over a limit, unfetchable) is a refusal (gpu_worker.common.refusal).

`handle` serves the model the environment names (ClipSettings); the API's local backend makes
its own `ClipWorker` from its settings.
"""

import asyncio
import base64
import binascii
import threading
import time
from typing import Any

from gpu_worker.clip.model import ClipEmbedder, decode_image
from gpu_worker.clip.settings import ClipSettings
from gpu_worker.common.fetch import IMAGE_TYPES, on_fetch_threads
from gpu_worker.common.refusal import Refused, TooLarge, input_object, request_id_of
from gpu_worker.common.signing import Unauthenticated, check_signature

INPUT_FIELDS = ("text", "image_url", "image_base64", "texts", "images")


def _is_url(item: str) -> bool:
    return item.startswith(("http://", "https://"))


class ClipWorker:
    """One CLIP model answering embedding jobs."""

    def __init__(self, settings: ClipSettings) -> None:
        self.settings = settings
        self._embedder: ClipEmbedder | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self) -> ClipEmbedder:
        """The model, loaded on first use (the worker's __main__ loads it at start-up)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = ClipEmbedder(self.settings.model_name, self.settings.model_id)
            return self._embedder

    def load(self) -> None:
        """Load the model now rather than on the first job."""
        self.embedder  # noqa: B018

    def shutdown(self) -> None:
        with self._lock:
            self._embedder = None

    def _parse(self, job_input: dict[str, Any]) -> tuple[str, list[str], bool]:
        """(kind, items, is_batch) for a valid input: kind is "text" or "image"."""
        given = [field for field in INPUT_FIELDS if field in job_input]
        if len(given) != 1:
            raise Refused(f"give exactly one of {', '.join(INPUT_FIELDS)}")
        field = given[0]
        value = job_input[field]
        items = value if field in ("texts", "images") else [value]
        if not isinstance(items, list) or not items:
            raise Refused(f"{field} must be a non-empty list")
        if len(items) > self.settings.max_batch:
            raise TooLarge(
                f"{field} holds {len(items)} items; the limit is {self.settings.max_batch}"
            )
        if not all(isinstance(item, str) and item for item in items):
            raise Refused(f"{field} must hold non-empty strings")
        kind = "text" if field in ("text", "texts") else "image"
        if kind == "text" and any(len(item) > self.settings.max_text_chars for item in items):
            raise TooLarge(f"text is longer than {self.settings.max_text_chars} characters")
        if field == "image_url" and not _is_url(value):
            raise Refused("image_url must be an http or https URL")
        if field == "image_base64" and _is_url(value):
            raise Refused("image_base64 holds a URL; send it as image_url")
        return kind, items, field in ("texts", "images")

    def _image_bytes(self, item: str) -> bytes:
        """The bytes of one image input: downloaded for a URL, decoded for base64 data."""
        if _is_url(item):
            return self.settings.fetch(item, "image", IMAGE_TYPES, self.settings.max_image_bytes)
        if len(item) > self.settings.max_image_bytes * 4 // 3 + 4:
            raise TooLarge(f"image is larger than {self.settings.max_image_bytes} bytes")
        try:
            return base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Refused("image data is not valid base64") from exc

    def _load_images(self, items: list[str]) -> list:
        return [
            decode_image(self._image_bytes(item), self.settings.max_image_pixels) for item in items
        ]

    async def handle(self, job: dict[str, Any]) -> dict[str, Any]:
        """Answer one RunPod job (see the module docstring)."""
        started = time.perf_counter()
        request_id = request_id_of(job)
        try:
            job_input = input_object(job)
            kind, items, is_batch = self._parse(job_input)
            check_signature(self.settings.signing_key, job_input)
            normalize = bool(job_input.get("normalize", True))
            model = self.embedder
            if kind == "image":
                images = await on_fetch_threads(self._load_images, items)
                loaded = time.perf_counter()
                vectors = await asyncio.to_thread(model.embed_images, images, normalize)
                tokens = 0
            else:
                loaded = time.perf_counter()
                vectors, tokens = await asyncio.to_thread(model.embed_texts, items, normalize)
        except Refused as exc:  # fetch and image errors included
            return exc.report(request_id)
        except Unauthenticated as exc:
            return {"error": str(exc), "request_id": request_id}
        done = time.perf_counter()
        embeddings = vectors.tolist()
        result: dict[str, Any] = {
            "request_id": request_id,
            "dim": model.dim,
            "model": model.name,
            "normalized": normalize,
            "usage": {"prompt_tokens": tokens},
            "timings": {
                "download_ms": round((loaded - started) * 1000, 3),
                "inference_ms": round((done - loaded) * 1000, 3),
                "total_ms": round((done - started) * 1000, 3),
            },
        }
        if is_batch:
            result["embeddings"] = embeddings
        else:
            result["embedding"] = embeddings[0]
        return result


worker = ClipWorker(ClipSettings())
handle = worker.handle
