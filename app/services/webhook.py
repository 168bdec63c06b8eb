"""RunPod's webhook for the parts of a job, in one place: the URL a part is queued with (signed
with the job-webhook key, app/core/keys.py, for that job and part: the signature is the
credential), its check, and what a delivery says."""

import hashlib
import hmac
import uuid
from typing import Any

from app.core.errors import InvalidInput, Unauthorized
from app.inference.base import QueuedJob
from app.inference.runpod import queued_job
from gpu_worker.common.signing import same

PATH = "/internal/runpod-webhook/{job_id}"


def signature(secret: str, job_id: uuid.UUID | str, part: int) -> str:
    return hmac.new(secret.encode(), f"{job_id}:{part}".encode(), hashlib.sha256).hexdigest()


def url(base: str, secret: str, job_id: uuid.UUID, part: int) -> str:
    """Where RunPod posts part `part` of the job once it is done (`base`: this API's URL)."""
    path = PATH.format(job_id=job_id)
    return f"{base}{path}?part={part}&signature={signature(secret, job_id, part)}"


def check(secret: str | None, job_id: uuid.UUID, part: int, given: str) -> None:
    """Unauthorized unless `given` is the signature of this job and part (never without a
    secret to sign with)."""
    if not secret or not same(signature(secret, job_id, part), given):
        raise Unauthorized("the webhook signature is invalid")


def delivered(body: Any) -> QueuedJob:
    """The part's state a delivery reports (a RunPod job: `{id, status, output}`)."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise InvalidInput("the webhook body must be a RunPod job: {id, status, output}")
    return queued_job(body)
