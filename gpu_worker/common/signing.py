"""HMAC request signing between the API and the workers that take users' data (CLIP,
transcription, image generation).

signature = hex HMAC-SHA256(secret, "<payload>|<unix ts>"), sent as `auth: {"ts", "sig"}`.
"""

import hashlib
import hmac
import time
from typing import Any

from pydantic import SecretStr

MAX_SKEW_SECONDS = 300


def sign(secret: str, payload: str, ts: int) -> str:
    message = f"{payload}|{ts}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_auth(secret: str, payload: str) -> dict[str, Any]:
    """The `auth` object for a request signed now."""
    ts = int(time.time())
    return {"ts": ts, "sig": sign(secret, payload, ts)}


def signing_payload(job_input: dict[str, Any]) -> str | None:
    """What a request to a worker signs: its one input, or a batch's items joined by newlines.
    None when the input holds none of them."""
    for field in ("text", "image_url", "image_base64", "audio_url", "audio_base64", "prompt"):
        if isinstance(job_input.get(field), str):
            return job_input[field]
    for field in ("texts", "images"):
        items = job_input.get(field)
        if isinstance(items, list) and all(isinstance(item, str) for item in items):
            return "\n".join(items)
    return None


class Unauthenticated(Exception):
    """The job's signature does not check out: the API's configuration, not the client's
    input, is at fault (a failure, not a refusal)."""


def check_signature(secret: SecretStr | None, job_input: dict[str, Any]) -> None:
    """Unauthenticated unless `job_input` carries a valid `auth` (no secret: none needed)."""
    if secret is not None and not verify(
        secret.get_secret_value(), signing_payload(job_input) or "", job_input.get("auth")
    ):
        raise Unauthenticated("Authentication failed")


def verify(secret: str, payload: str, auth: Any, now: float | None = None) -> bool:
    """True when `auth` carries a signature of `payload` made within ±MAX_SKEW_SECONDS."""
    if not isinstance(auth, dict):
        return False
    ts, sig = auth.get("ts"), auth.get("sig")
    if not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(sig, str):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(sign(secret, payload, ts), sig)
