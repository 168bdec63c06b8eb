"""HMAC request signing between the API and the workers that take users' data (CLIP,
transcription, image generation), and of the workers' readiness callbacks.

A job's signature covers its whole input but `auth` (canonical JSON: sorted keys, no spaces):
signature = hex HMAC-SHA256(key, "<canonical input>|<unix ts>"), sent as `auth: {"ts", "sig"}`.
The key is the one the worker holds (SIGNING_KEY): derived by the API for its purpose
(app/core/keys.py), never the stack's signing secret itself.
"""

import hashlib
import hmac
import json
import time
from typing import Any

from pydantic import SecretStr

MAX_SKEW_SECONDS = 300


def canonical(job_input: dict[str, Any]) -> bytes:
    """What a job's signature covers: its input but `auth`, as canonical JSON."""
    unsigned = {key: value for key, value in job_input.items() if key != "auth"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(key: str, message: bytes, ts: int) -> str:
    return hmac.new(key.encode(), message + f"|{ts}".encode(), hashlib.sha256).hexdigest()


def signed(key: str, job_input: dict[str, Any]) -> dict[str, Any]:
    """`job_input` with the `auth` of a signature made now."""
    ts = int(time.time())
    return job_input | {"auth": {"ts": ts, "sig": sign(key, canonical(job_input), ts)}}


class Unauthenticated(Exception):
    """The job's signature does not check out: the API's configuration, not the client's
    input, is at fault (a failure, not a refusal)."""


def check_signature(key: SecretStr | None, job_input: dict[str, Any]) -> None:
    """Unauthenticated unless `job_input` carries a valid `auth` (no key: none needed)."""
    if key is not None and not verify(
        key.get_secret_value(), canonical(job_input), job_input.get("auth")
    ):
        raise Unauthenticated("Authentication failed")


def verify(key: str, message: bytes, auth: Any, now: float | None = None) -> bool:
    """True when `auth` carries a signature of `message` made within ±MAX_SKEW_SECONDS."""
    if not isinstance(auth, dict):
        return False
    ts, sig = auth.get("ts"), auth.get("sig")
    if not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(sig, str):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > MAX_SKEW_SECONDS:
        return False
    return same(sign(key, message, ts), sig)


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of a signature with a given one, whatever characters that
    holds (a non-ASCII one is simply not equal)."""
    return hmac.compare_digest(expected.encode(), given.encode(errors="replace"))
