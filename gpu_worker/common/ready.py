"""The readiness callback: tells the deploy flow that a worker has loaded its model."""

import json
import logging
import time

import httpx

from gpu_worker.common.settings import WorkerSettings
from gpu_worker.common.signing import sign

log = logging.getLogger("tandem.worker")


def announce_ready(settings: WorkerSettings, model: str) -> bool:
    """POST `{endpoint_id, model, status: "ready"}` to READY_WEBHOOK_URL, HMAC-signed over the
    body (`X-Tandem-Timestamp`, `X-Tandem-Signature`). Best effort: a failure is logged."""
    if not settings.ready_webhook_url:
        return False
    body = json.dumps(
        {"endpoint_id": settings.runpod_endpoint_id, "model": model, "status": "ready"}
    )
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
