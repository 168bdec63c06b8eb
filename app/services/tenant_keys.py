"""A tenant's own RunPod account: its API key, checked with RunPod before it is kept, kept
sealed (app/core/envelope.py: never returned, never logged; its Hub tokens and webhook secret
too, `seal`), and used for that tenant's deployments (made, served and removed in its
account). The key goes only when none of its deployments is left there."""

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.config import Settings
from app.core.envelope import Keyring, KeyringError, Sealed, is_sealed
from app.core.errors import ApiError, Conflict, InvalidInput, NotConfigured
from app.models import Deployment, TenantRunPodKey, WebhookSecret
from runpod_api.client import RunPodApiError, RunPodRest

log = logging.getLogger("tandem.tenant_keys")
NOT_SET_UP = "tenant RunPod keys are not set up here: TENANT_KEY_ENCRYPTION_KEYS is unset"


class RunPodUnreachable(ApiError):
    status, code = 503, "runpod_unavailable"


class RunPodKeyOut(BaseModel):
    configured: bool
    hint: str | None = None  # the key's last characters
    updated_at: datetime | None = None


def keyring_of(settings: Settings) -> Keyring | None:
    """The KEKs tenants' keys are sealed with (None: a deployed API without them)."""
    if settings.tenant_key_encryption_keys is not None:
        return Keyring.parse(settings.tenant_key_encryption_keys.get_secret_value())
    return Keyring.local(settings.tandem_home) if settings.on_one_machine else None


def check_with_runpod(settings: Settings, key: str) -> set[str]:
    """The ids of the endpoints of the account `key` opens; InvalidInput if RunPod refuses
    it."""
    try:
        with RunPodRest(key, settings.runpod_rest_api, backoff_s=0.5) as rest:
            return {endpoint["id"] for endpoint in rest.list_endpoints()}
    except RunPodApiError as exc:
        if exc.status in (401, 403):
            raise InvalidInput(
                f"runpod_key: RunPod refused the key (HTTP {exc.status}); give an API key with "
                "read and write access"
            ) from None
        raise RunPodUnreachable(
            f"RunPod could not check the key (HTTP {exc.status or 'unreachable'}); try again"
        ) from None


async def register(
    engine: AsyncEngine, settings: Settings, keyring: Keyring | None, tenant: str, key: str
) -> RunPodKeyOut:
    """Check `key` with RunPod, then keep it sealed as the tenant's. A key replacing another
    must open the account the tenant's deployments are in (409 naming those it cannot see)."""
    if keyring is None:
        raise NotConfigured(NOT_SET_UP)
    endpoints = await asyncio.to_thread(check_with_runpod, settings, key)
    sealed = keyring.seal(key, tenant)
    values = {
        "tenant": tenant,
        "ciphertext": sealed.ciphertext,
        "wrapped_key": sealed.wrapped_key,
        "kek_id": sealed.kek_id,
        "hint": key[-4:],
    }
    statement = pg_insert(TenantRunPodKey).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["tenant"],
        set_={
            **{k: statement.excluded[k] for k in values if k != "tenant"},
            "updated_at": func.now(),
        },
    )
    async with engine.begin() as conn:
        await take_turn(conn, tenant)
        elsewhere = [
            row.name
            for row in await _in_own_account(conn, tenant)
            if row.endpoint_id is not None and row.endpoint_id not in endpoints
        ]
        if elsewhere:
            raise Conflict(
                "runpod_key: the key opens another RunPod account than the one your "
                f"deployments are in; delete them first: {', '.join(sorted(elsewhere))}"
            )
        await conn.execute(statement)
    return await key_status(engine, tenant)


async def take_turn(conn: AsyncConnection, tenant: str) -> None:
    """The tenant's deployment creations and key changes take turns (until the commit)."""
    await conn.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"deploy:{tenant}", 0)))
    )


async def _in_own_account(conn: AsyncConnection, tenant: str) -> Sequence[Row]:
    """The tenant's deployments whose endpoints are (or will be) in its own account."""
    query = select(Deployment.name, Deployment.endpoint_id).where(
        Deployment.tenant == tenant,
        Deployment.own_account,
        Deployment.status.not_in(("failed", "deleted")),
    )
    return (await conn.execute(query)).all()


async def key_status(engine: AsyncEngine, tenant: str) -> RunPodKeyOut:
    query = select(TenantRunPodKey.hint, TenantRunPodKey.updated_at).where(
        TenantRunPodKey.tenant == tenant
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    if row is None:
        return RunPodKeyOut(configured=False)
    return RunPodKeyOut(configured=True, hint=f"…{row.hint}", updated_at=row.updated_at)


async def tenant_key(conn: AsyncConnection, keyring: Keyring | None, tenant: str) -> str | None:
    """The tenant's RunPod key, opened (None: it has none)."""
    row = (
        await conn.execute(select(TenantRunPodKey).where(TenantRunPodKey.tenant == tenant))
    ).one_or_none()
    if row is None:
        return None
    if keyring is None:
        raise NotConfigured(NOT_SET_UP)
    try:
        return keyring.open(Sealed(row.ciphertext, row.wrapped_key, row.kek_id), tenant)
    except KeyringError as exc:
        log.error("tenant %s: its RunPod key does not open: %s", tenant, exc)
        raise NotConfigured(
            f"the tenant's RunPod key does not open here ({exc}); register it again (PUT "
            "/v1/tenant/runpod-key)"
        ) from None


async def remove(engine: AsyncEngine, tenant: str) -> None:
    """Forget the tenant's key; 409 naming the deployments still in its account."""
    async with engine.begin() as conn:
        await take_turn(conn, tenant)
        if names := [row.name for row in await _in_own_account(conn, tenant)]:
            raise Conflict(
                "delete the deployments in your RunPod account first (DELETE "
                f"/v1/deployments/{{id}}): {', '.join(sorted(names))}"
            )
        await conn.execute(delete(TenantRunPodKey).where(TenantRunPodKey.tenant == tenant))


def seal(keyring: Keyring | None, value: str, tenant: str) -> str:
    """`value`, a secret the tenant gave, sealed as one column's text."""
    if keyring is None:
        raise NotConfigured(NOT_SET_UP)
    return keyring.seal(value, tenant).text()


def open_sealed(keyring: Keyring | None, text: str, tenant: str) -> str:
    """What `seal` sealed, opened."""
    if keyring is None:
        raise NotConfigured(NOT_SET_UP)
    return keyring.open(Sealed.from_text(text), tenant)


async def rewrap_all(engine: AsyncEngine, keyring: Keyring) -> int:
    """Wrap the data keys the current KEK did not wrap with it (after a rotation: the API does
    at its start), and seal the webhook secrets and Hub tokens an earlier release kept in
    plain text; how many. A row no KEK here opens is logged and left as it is: the API still
    starts (that tenant registers its key again, or rotates its webhook secret)."""
    done = 0
    async with engine.begin() as conn:
        keys = await conn.execute(
            select(TenantRunPodKey)
            .where(TenantRunPodKey.kek_id != keyring.current)
            .with_for_update()
        )
        for row in keys.all():
            try:
                sealed = keyring.rewrap(Sealed(row.ciphertext, row.wrapped_key, row.kek_id))
            except KeyringError as exc:
                log.error("tenant %s: its RunPod key is left as it is: %s", row.tenant, exc)
                continue
            await conn.execute(
                update(TenantRunPodKey)
                .where(TenantRunPodKey.tenant == row.tenant)
                .values(wrapped_key=sealed.wrapped_key, kek_id=sealed.kek_id)
            )
            done += 1
        for table, column, key in (
            (WebhookSecret, WebhookSecret.secret, WebhookSecret.tenant),
            (Deployment, Deployment.hf_token, Deployment.id),
        ):
            rows = await conn.execute(
                select(key, column, table.tenant).where(column.is_not(None)).with_for_update()
            )
            for row_key, text, tenant in rows.all():
                try:
                    resealed = _resealed(keyring, text or "", tenant)
                except KeyringError as exc:
                    log.error(
                        "tenant %s: a sealed %s is left as it is: %s", tenant, column.key, exc
                    )
                    continue
                if resealed is not None:
                    await conn.execute(
                        update(table).where(key == row_key).values({column: resealed})
                    )
                    done += 1
    return done


def _resealed(keyring: Keyring, text: str, tenant: str) -> str | None:
    """`text` sealed under the current KEK (None: it already is)."""
    if not is_sealed(text):
        return keyring.seal(text, tenant).text()
    sealed = Sealed.from_text(text)
    return None if sealed.kek_id == keyring.current else keyring.rewrap(sealed).text()
