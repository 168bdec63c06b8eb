"""The readiness callback: tells whoever made the endpoint (a deploy, or the API's deployments)
that a worker has loaded its model, or why it could not."""

import json
import logging
import time

import httpx

from gpu_worker.common.settings import WorkerSettings
from gpu_worker.common.signing import sign

log = logging.getLogger("tandem.worker")
MAX_ERROR_CHARS = 500


def announce(settings: WorkerSettings, model: str, error: str | None = None) -> bool:
    """POST `{endpoint_id, model, status: "ready"}` (or `status: "failed"` with the `error`) to
    READY_WEBHOOK_URL, HMAC-signed over the body (`X-Tandem-Timestamp`, `X-Tandem-Signature`).
    Best effort: a failure is logged."""
    if not settings.ready_webhook_url:
        return False
    message = {"endpoint_id": settings.runpod_endpoint_id, "model": model, "status": "ready"}
    if error is not None:
        message |= {"status": "failed", "error": error[:MAX_ERROR_CHARS]}
    body = json.dumps(message)
    ts = int(time.time())
    headers = {"Content-Type": "application/json", "X-Tandem-Timestamp": str(ts)}
    if settings.embedding_hmac_secret is not None:
        headers["X-Tandem-Signature"] = sign(
            settings.embedding_hmac_secret.get_secret_value(), body, ts
        )
    try:
        response = httpx.post(settings.ready_webhook_url, content=body, headers=headers, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("readiness callback failed: %s", type(exc).__name__)
        return False
    return True
