"""A deployment's notification to its `webhook_url` once it is `ready` or `failed`: a JSON body
signed with the tenant's webhook secret, `X-Tandem-Signature: t=<unix time>,v1=<hex HMAC-SHA256
of "<t>.<body>">`, retried with backoff; after the last failed attempt the deployment is
`webhook_failed`. Every attempt is stored (GET /v1/deployments/{id} shows them). Outside local
mode the request goes to the public address its host resolves to at that moment, checked (a
DNS answer changed since the deployment was created cannot point it into our network)."""

import asyncio
import functools
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.envelope import Keyring, KeyringError
from app.core.errors import NotConfigured
from app.models import WebhookDelivery, WebhookSecret
from app.services import tenant_keys
from app.services.deployments import due, transition
from gpu_worker.common.fetch import EVERYWHERE, FetchError, on_fetch_threads, pinned_request

ATTEMPTS = 3
TIMEOUT_S = 10.0


def signature(secret: str, body: bytes, ts: int) -> str:
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def payload(row: Row) -> bytes:
    return json.dumps(
        {
            "deployment_id": str(row.id),
            "name": row.name,
            "model": row.model,
            "status": row.status,
            "endpoint_id": row.endpoint_id,
            "error": row.error,
        }
    ).encode()


async def signed_post(
    engine: AsyncEngine,
    keyring: Keyring | None,
    tenant: str,
    url: str,
    body: bytes,
    public_only: bool,
) -> tuple[int | None, str | None]:
    """POST `body` to `url`, signed with the tenant's webhook secret (sealed with `keyring`), at
    a public address only if `public_only`: the status it answered, and what went wrong."""
    async with engine.connect() as conn:
        sealed = await conn.scalar(
            select(WebhookSecret.secret).where(WebhookSecret.tenant == tenant)
        )
    status_code, error = None, None
    allowed = () if public_only else EVERYWHERE
    try:
        headers = {"Content-Type": "application/json"}
        request = await on_fetch_threads(
            functools.partial(pinned_request, "POST", url, allowed, content=body, headers=headers)
        )
        if sealed is None:
            raise NotConfigured("the tenant has no webhook secret")
        secret = tenant_keys.open_sealed(keyring, sealed, tenant)
        request.headers["X-Tandem-Signature"] = signature(secret, body, int(time.time()))
        async with asyncio.timeout(TIMEOUT_S), httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            response = await client.send(request)
        status_code = response.status_code
        if response.is_error:
            error = f"answered {status_code}"
    except FetchError as exc:
        error = f"refused: {exc}"
    except (KeyringError, NotConfigured, ValueError) as exc:
        error = f"not signed: {exc}; rotate it (POST /v1/tenant/webhook-secret)"
    except TimeoutError:
        error = f"no answer within {TIMEOUT_S:g} s"
    except httpx.HTTPError as exc:
        error = f"unreachable: {type(exc).__name__}"
    return status_code, error


async def deliver(
    engine: AsyncEngine, keyring: Keyring | None, row: Row, retry_base_s: float, public_only: bool
) -> None:
    """One attempt at notifying `row`'s webhook of its status (ready or failed), signed with
    the tenant's webhook secret (sealed with `keyring`), at a public address only if
    `public_only`; the next is due after `retry_base_s * 4**attempt`, and none after the
    last."""
    if row.webhook_url is None or row.status not in ("ready", "failed"):
        async with engine.begin() as conn:
            await conn.execute(due(row.id, None))
        return
    async with engine.connect() as conn:
        done = await conn.scalar(
            select(func.count()).where(
                WebhookDelivery.deployment_id == row.id, WebhookDelivery.event == row.status
            )
        )
    status_code, error = await signed_post(
        engine, keyring, row.tenant, row.webhook_url, payload(row), public_only
    )
    attempt = (done or 0) + 1
    async with engine.begin() as conn:
        await conn.execute(
            insert(WebhookDelivery).values(
                deployment_id=row.id,
                event=row.status,
                attempt=attempt,
                status_code=status_code,
                error=error,
            )
        )
        if error is None:
            await conn.execute(due(row.id, None))
        elif attempt < ATTEMPTS:
            later = datetime.now(UTC) + timedelta(seconds=retry_base_s * 4 ** (attempt - 1))
            await conn.execute(due(row.id, later))
        else:
            detail = f"{ATTEMPTS} attempts failed, the last: {error}"
            await transition(conn, row.id, "webhook_failed", detail, check_at=None)
