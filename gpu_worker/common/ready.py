"""The readiness callback: tells whoever made the endpoint (the API's deployments) that a
worker is loading its model (its weights are fetched), has loaded it, or why it could not."""

import json
import logging
import time
from typing import Literal

import httpx

from gpu_worker.common.settings import WorkerSettings
from gpu_worker.common.signing import sign

log = logging.getLogger("tandem.worker")
MAX_ERROR_CHARS = 500


Stage = Literal["loading", "ready", "failed"]


def announce(
    settings: WorkerSettings, model: str, stage: Stage = "ready", error: str | None = None
) -> bool:
    """POST `{endpoint_id, model, status}` (`status: "failed"` with the `error`) to
    READY_WEBHOOK_URL, signed with the worker's SIGNING_KEY over the body
    (`X-Tandem-Timestamp`, `X-Tandem-Signature`). Best effort: a failure is logged."""
    if not settings.ready_webhook_url:
        return False
    message = {"endpoint_id": settings.runpod_endpoint_id, "model": model, "status": stage}
    if error is not None:
        message["error"] = error[:MAX_ERROR_CHARS]
    body = json.dumps(message).encode()
    ts = int(time.time())
    headers = {"Content-Type": "application/json", "X-Tandem-Timestamp": str(ts)}
    if settings.signing_key is not None:
        headers["X-Tandem-Signature"] = sign(settings.signing_key.get_secret_value(), body, ts)
    try:
        response = httpx.post(settings.ready_webhook_url, content=body, headers=headers, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("readiness callback failed: %s", type(exc).__name__)
        return False
    return True
