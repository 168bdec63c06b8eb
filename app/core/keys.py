"""The keys derived from the stack's one signing secret (SIGNING_SECRET), one per purpose, with
HKDF-SHA256 (RFC 5869): whoever holds one key cannot make another, nor the secret. The stack's
workers hold the `workers` key, a deployment's workers only their deployment's; job webhooks,
and local signed URLs each have their own."""

import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

WORKERS = "workers"  # the API's requests to the stack's workers
JOB_WEBHOOKS = "job-webhooks"  # the URLs RunPod posts a finished job part to
SIGNED_URLS = "signed-urls"  # local storage's signed object URLs


def derive(secret: str, purpose: str) -> str:
    """The key for `purpose`, as 64 hex digits."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"tandem/{purpose}".encode())
    return hkdf.derive(secret.encode()).hex()


def deployment_key(secret: str, deployment_id: uuid.UUID) -> str:
    """The one key a deployment's workers hold: it signs the API's requests to them and their
    readiness callbacks, and nothing of another deployment's."""
    return derive(secret, f"deployment/{deployment_id}")
