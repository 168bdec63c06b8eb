"""The development worker's handler: echo chat and hash embeddings (see the package docstring)."""

import hashlib
import logging
import math
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from gpu_worker.common.settings import WorkerSettings
from gpu_worker.common.signing import signing_payload, verify

MODEL_ID = "tandem-dev-echo"
EMBEDDING_DIM = 512
ROLES = {"system", "user", "assistant"}

log = logging.getLogger("tandem.worker.dev")
settings = WorkerSettings()
log.warning("development worker: deterministic echo and hash embeddings, not a model")


def _error(job: dict[str, Any], message: str) -> dict[str, Any]:
    return {"error": message, "request_id": job.get("id")}


def _chat_error(job_input: dict[str, Any]) -> str | None:
    messages = job_input.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return f"messages[{i}] must be an object with a string content"
        if message.get("role") not in ROLES:
            return f"messages[{i}].role must be one of {sorted(ROLES)}"
    max_tokens = job_input.get("max_tokens", 256)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens must be a positive integer"
    return None


def _reply(job_input: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The echo reply as word tokens, and the result dict it makes."""
    messages = job_input["messages"]
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    words = f"echo: {last_user}".split()
    max_tokens = job_input.get("max_tokens", 256)
    tokens = [w + " " for w in words[:max_tokens]]
    tokens[-1] = tokens[-1].rstrip()
    result = {
        "raw_text": "".join(tokens),
        "finish_reason": "length" if len(words) > max_tokens else "stop",
        "usage": {
            "prompt_tokens": sum(len(m["content"].split()) for m in messages),
            "completion_tokens": len(tokens),
        },
        "model": MODEL_ID,
    }
    return tokens, result


def _embedding(job: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    job_input = job["input"]
    payload = job_input.get("text", job_input.get("image_url"))
    if not isinstance(payload, str) or not payload:
        return _error(job, "give one of text or image_url as a non-empty string")
    secret = settings.embedding_hmac_secret
    if secret is not None and not verify(
        secret.get_secret_value(), signing_payload(job_input) or "", job_input.get("auth")
    ):
        return _error(job, "Authentication failed")
    raw = hashlib.shake_256(payload.encode()).digest(EMBEDDING_DIM * 4)
    vector = [v / 2**31 - 1.0 for v in struct.unpack(f"<{EMBEDDING_DIM}I", raw)]
    normalize = job_input.get("normalize", True)
    if normalize:
        norm = math.sqrt(sum(v * v for v in vector))
        vector = [v / norm for v in vector]
    total_ms = (time.perf_counter() - started) * 1000
    return {
        "request_id": job_input.get("request_id", job.get("id")),
        "embedding": vector,
        "dim": EMBEDDING_DIM,
        "model": MODEL_ID,
        "normalized": bool(normalize),
        "timings": {"download_ms": 0.0, "inference_ms": total_ms, "total_ms": total_ms},
    }


async def handle(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Chat (`messages`, optionally `stream`) or embedding (`text` | `image_url`)."""
    job_input = job.get("input")
    if not isinstance(job_input, dict):
        yield _error(job, "input must be an object")
        return
    if "text" in job_input or "image_url" in job_input:
        yield _embedding(job)
        return
    if problem := _chat_error(job_input):
        yield _error(job, problem)
        return
    started = time.perf_counter()
    tokens, result = _reply(job_input)
    if job_input.get("stream"):
        for token in tokens:
            yield {"delta": token}
    total_ms = (time.perf_counter() - started) * 1000
    result["timings"] = {"queue_ms": 0.0, "inference_ms": total_ms, "total_ms": total_ms}
    yield result
