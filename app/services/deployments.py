"""Deployments in Postgres: created in `validating`, moved on only along the lifecycle's edges
(a `ready` after `failed` is refused) with every change stored as an event with its time;
read and listed per tenant. The work between the states is the runner's
(app/services/deployment_runner.py)."""

import asyncio
import contextlib
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from pydantic import HttpUrl
from sqlalchemy import Update, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.config import Settings
from app.core.envelope import Keyring
from app.core.errors import ApiError, Conflict, Forbidden, InvalidInput, NotConfigured, NotFound
from app.models import (
    Deployment,
    DeploymentEvent,
    TenantRunPodKey,
    WebhookDelivery,
    WebhookSecret,
)
from app.schemas import (
    DeploymentCreated,
    DeploymentIn,
    DeploymentOut,
)
from app.services import tenant_keys
from app.services.model_check import HubUnreachable, ModelRefused, check_model
from gpu_worker.common.fetch import FetchError, public_address
from runpod_api import catalog

# Where each status may go next.
NEXT: dict[str, set[str]] = {
    "validating": {"selecting_gpu", "failed", "deleting"},
    "selecting_gpu": {"creating_endpoint", "failed", "deleting"},
    "creating_endpoint": {"downloading_model", "failed", "deleting"},
    "downloading_model": {"loading_model", "ready", "failed", "deleting"},
    "loading_model": {"ready", "failed", "deleting"},
    "ready": {"webhook_failed", "deleting"},
    "failed": {"webhook_failed", "deleting"},
    "webhook_failed": {"deleting"},
    "deleting": {"deleted"},
    "deleted": set(),
}
# The engine settings a tenant may give a deployment (`env`): tuning of the worker's engine,
# nothing that names code, a model, a tokenizer or a host to fetch from (no TRUST_REMOTE_CODE,
# TOKENIZER, HF_ENDPOINT, VLLM_*: a crafted Hub repository would run code on the GPU worker).
# The llm worker reads the first group (vLLM's engine arguments by name), the imagegen worker
# the second; HF_HOME, where the weights are cached, both.
TENANT_ENV = frozenset(
    {
        "MAX_MODEL_LEN",
        "DTYPE",
        "QUANTIZATION",
        "GPU_MEMORY_UTILIZATION",
        "MAX_CONCURRENCY",
        "ENFORCE_EAGER",
        "DEFAULT_MAX_TOKENS",
        "MAX_EMBED_BATCH",
        "ENABLE_PREFIX_CACHING",
        "ENABLE_CHUNKED_PREFILL",
        "MAX_NUM_BATCHED_TOKENS",
        "KV_CACHE_DTYPE",
        "TOOL_CALL_PARSER",
        "ENABLE_AUTO_TOOL_CHOICE",
        "REASONING_PARSER",
        "SEED",
    }
    | {"CPU_OFFLOAD", "ATTENTION_SLICING", "DEFAULT_STEPS", "DEFAULT_GUIDANCE"}
    | {"HF_HOME"}
)
# The 202's estimate, before the model's size is known: a worker's start, a small model's
# download and load on a GPU. GET /v1/deployments/{id} shows where it really is.
ESTIMATED_READY_SECONDS = 180
# How long a request waits for the Hub to say whether the model can be deployed (one request).
REQUEST_HUB_TIMEOUT_S = 3.0


class HubDown(ApiError):
    status, code = 503, "hub_unavailable"


def deployment_image(settings: Settings, task: str) -> str | None:
    """The worker image a deployment of `task` runs (None: not set up here)."""
    return settings.deployment_imagegen_image if task == "image" else settings.deployment_image


def check_image(settings: Settings, task: str) -> None:
    if deployment_image(settings, task) is None:
        setting = "DEPLOYMENT_IMAGEGEN_IMAGE" if task == "image" else "DEPLOYMENT_IMAGE"
        raise NotConfigured(f"deployments of task {task} are not set up here: {setting} is unset")


def sources_of(status: str) -> list[str]:
    return [source for source, targets in NEXT.items() if status in targets]


async def transition(
    conn: AsyncConnection,
    deployment_id: uuid.UUID,
    to: str,
    detail: str | None = None,
    **values: Any,
) -> bool:
    """Move the deployment to `to` (with `values`) if its status may go there; record it."""
    moved = await conn.scalar(
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.status.in_(sources_of(to)))
        .values(status=to, updated_at=func.now(), **values)
        .returning(Deployment.id)
    )
    if moved is None:
        return False
    await conn.execute(
        insert(DeploymentEvent).values(deployment_id=deployment_id, status=to, detail=detail)
    )
    return True


def due(deployment_id: uuid.UUID, at: datetime | None) -> Update:
    """When the runner looks at the deployment next (None: only a change of status brings it
    back)."""
    return update(Deployment).where(Deployment.id == deployment_id).values(check_at=at)


def check_request(body: DeploymentIn, settings: Settings) -> None:
    """Refuse what no deployment could be made of, before anything is stored."""
    if body.gpu is not None:
        check_gpu(body.gpu, settings.deployment_gpu_types)
    if body.workers_max > settings.max_deployment_workers:
        raise InvalidInput(
            f"workers_max: {body.workers_max} is over this API's cap of "
            f"{settings.max_deployment_workers} (MAX_DEPLOYMENT_WORKERS)"
        )
    if body.workers_min > body.workers_max:
        raise InvalidInput("workers_min: must not be more than workers_max")
    if body.workers_min > settings.max_deployment_min_workers:
        raise InvalidInput(
            f"workers_min: {body.workers_min} is over this API's cap of "
            f"{settings.max_deployment_min_workers} (MAX_DEPLOYMENT_MIN_WORKERS)"
        )
    if body.idle_timeout > settings.max_deployment_idle_timeout:
        raise InvalidInput(
            f"idle_timeout: {body.idle_timeout} s is over this API's cap of "
            f"{settings.max_deployment_idle_timeout} s (MAX_DEPLOYMENT_IDLE_TIMEOUT)"
        )
    if refused := sorted(body.env.keys() - TENANT_ENV):
        raise InvalidInput(
            f"env: {', '.join(refused)} may not be set by a deployment; give only these "
            f"engine settings: {', '.join(sorted(TENANT_ENV))}"
        )
    model_is_directory = body.model.startswith("/")
    if model_is_directory and not settings.on_one_machine:
        raise InvalidInput("model: a model directory is for local mode; give a Hub id (org/name)")
    if body.task is not None:
        check_image(settings, body.task)


def check_gpu(asked: str, allowed: list[str]) -> None:
    """`gpu` must name a pool, GPU type or size (24gb) in the GPU pools this API deploys on."""
    gpus = catalog.snapshot()["gpus"]
    try:
        pools = catalog.select([asked], gpus).pools
    except catalog.UnknownGpu as exc:
        raise InvalidInput(f"gpu: {exc}") from None
    allowed_pools = catalog.select(allowed, gpus).pools
    if not set(pools) & set(allowed_pools):
        sizes = sorted({catalog.pool_memory(catalog.pools(gpus)[p]) for p in allowed_pools})
        raise InvalidInput(
            f"gpu: {asked!r} is not allowed: give one of {', '.join(allowed)}, a pool of them "
            f"({', '.join(allowed_pools)}) or a size ({', '.join(f'{s}gb' for s in sizes)})"
        )


def check_webhook_url(url: HttpUrl) -> None:
    """Outside local mode a webhook is https and on a public address (never this network)."""
    if url.scheme != "https":
        raise InvalidInput("webhook_url: must be https")
    try:
        public_address(url.host or "", url.port or 443)
    except FetchError as exc:
        raise InvalidInput(f"webhook_url: {exc}") from None


def default_name(model: str, deployment_id: uuid.UUID) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", model.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-")
    return f"{stem[:50] or 'model'}-{deployment_id.hex[:6]}"


async def create(
    engine: AsyncEngine,
    settings: Settings,
    keyring: Keyring | None,
    gpus: list[dict[str, Any]],
    tenant: str,
    body: DeploymentIn,
) -> DeploymentCreated:
    """Store a new deployment in `validating`, due at once for the runner (which checks the
    model again: the Hub may have changed since its recent answer, or not answered here). It
    is in the tenant's own RunPod account if the tenant has registered a key (`runpod_key`
    registers one first), else in the stack's. `gpus` is RunPod's catalog (the stack account's):
    a model no allowed pool holds is refused here; capacity is the runner's to look at."""
    check_request(body, settings)
    sizes = [{key: value for key, value in gpu.items() if key != "availability"} for gpu in gpus]
    try:
        facts, _gpu = await asyncio.to_thread(
            check_model,
            body.model,
            body.task,
            body.hf_token,
            settings.hf_endpoint,
            sizes,
            settings.deployment_gpu_types,
            body.gpu,
            REQUEST_HUB_TIMEOUT_S,
            recent=True,
        )
    except ModelRefused as exc:
        raise InvalidInput(f"model: {exc}") from None
    except HubUnreachable:
        if body.task is None:
            raise HubDown(
                "the Hugging Face Hub cannot be reached to tell the model's task: give task, "
                "or try again"
            ) from None
        task: str = body.task  # accepted: the runner checks the model once the Hub answers
    else:
        task = body.task or facts.task
        check_image(settings, task)
    if body.webhook_url is not None and not settings.on_one_machine:
        await asyncio.to_thread(check_webhook_url, body.webhook_url)  # resolves its host
    if body.runpod_key is not None:  # the last check: a refused request registers nothing
        await tenant_keys.register(
            engine, settings, keyring, tenant, body.runpod_key.get_secret_value()
        )
    deployment_id = uuid.uuid4()
    name = body.name or default_name(body.model, deployment_id)
    now = datetime.now(UTC)
    values = {
        "id": deployment_id,
        "tenant": tenant,
        "name": name,
        "model": body.model,
        "task": task,
        "gpu": body.gpu,
        "workers_min": body.workers_min,
        "workers_max": body.workers_max,
        "idle_timeout": body.idle_timeout,
        "env": body.env,
        "webhook_url": str(body.webhook_url) if body.webhook_url else None,
        "hf_token": tenant_keys.seal(keyring, body.hf_token, tenant) if body.hf_token else None,
        "status": "validating",
        "deadline_at": now + timedelta(seconds=settings.deployment_ready_seconds),
        "check_at": now,
    }
    webhook_secret = None
    try:
        async with engine.begin() as conn:
            # One tenant's creations take turns, so the cap on live ones holds under races.
            await tenant_keys.take_turn(conn, tenant)
            live = await conn.scalar(select(func.count()).where(*_live(tenant))) or 0
            if live >= settings.max_live_deployments:
                raise Conflict(
                    f"the tenant has {live} live deployments, the most allowed "
                    f"(MAX_LIVE_DEPLOYMENTS); delete one first"
                )
            own_account = await conn.scalar(
                select(exists().where(TenantRunPodKey.tenant == tenant))
            )
            if not own_account and not in_stack_account(settings, tenant):
                raise Forbidden(
                    "deployments in this API's RunPod account are not open to this tenant: "
                    "register your own RunPod key (PUT /v1/tenant/runpod-key, or runpod_key "
                    "in this request), or ask the operator to allow it (STACK_ACCOUNT_TENANTS)"
                )
            created_at = await conn.scalar(
                insert(Deployment)
                .values({**values, "own_account": own_account})
                .returning(Deployment.created_at)
            )
            await conn.execute(
                insert(DeploymentEvent).values(deployment_id=deployment_id, status="validating")
            )
            if body.webhook_url is not None:
                webhook_secret = await _new_webhook_secret(conn, keyring, tenant)
    except IntegrityError:
        raise Conflict(f"name: the tenant already has a deployment named {name!r}") from None
    return DeploymentCreated(
        deployment_id=deployment_id,
        name=name,
        status="validating",
        model=body.model,
        estimated_ready_seconds=ESTIMATED_READY_SECONDS,
        created_at=created_at,
        webhook_secret=webhook_secret,
    )


def in_stack_account(settings: Settings, tenant: str) -> bool:
    """Whether the tenant may deploy in the stack's own RunPod account."""
    allowed = settings.stack_account_tenants
    if allowed is None:
        return settings.on_one_machine
    return "*" in allowed or tenant in allowed


def _live(tenant: str) -> list[Any]:
    return [
        Deployment.tenant == tenant,
        Deployment.status.not_in(("failed", "deleted")),
        Deployment.error.is_(None),
    ]


async def _new_webhook_secret(
    conn: AsyncConnection, keyring: Keyring | None, tenant: str
) -> str | None:
    """The tenant's webhook secret if this call made it (shown once), else None."""
    secret, sealed = _webhook_secret(keyring, tenant)
    made = await conn.scalar(
        pg_insert(WebhookSecret)
        .values(tenant=tenant, secret=sealed)
        .on_conflict_do_nothing()
        .returning(WebhookSecret.tenant)
    )
    return secret if made else None


def _webhook_secret(keyring: Keyring | None, tenant: str) -> tuple[str, str]:
    """A new webhook secret for the tenant, and it sealed as it is kept."""
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    return secret, tenant_keys.seal(keyring, secret, tenant)


async def rotate_webhook_secret(engine: AsyncEngine, keyring: Keyring | None, tenant: str) -> str:
    """A new webhook secret for the tenant, replacing its old one (shown once): notifications
    from now on are signed with it."""
    secret, sealed = _webhook_secret(keyring, tenant)
    statement = pg_insert(WebhookSecret).values(tenant=tenant, secret=sealed)
    async with engine.begin() as conn:
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant"], set_={"secret": sealed, "created_at": func.now()}
            )
        )
    return secret


async def get(engine: AsyncEngine, deployment_id: uuid.UUID, tenant: str) -> DeploymentOut:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(Deployment).where(
                    Deployment.id == deployment_id,
                    Deployment.tenant == tenant,
                    Deployment.status != "deleted",
                )
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"deployment {deployment_id} not found")
        events = (
            await conn.execute(
                select(DeploymentEvent.status, DeploymentEvent.detail, DeploymentEvent.at)
                .where(DeploymentEvent.deployment_id == deployment_id)
                .order_by(DeploymentEvent.id)
            )
        ).all()
        deliveries = (
            await conn.execute(
                select(
                    WebhookDelivery.event,
                    WebhookDelivery.attempt,
                    WebhookDelivery.status_code,
                    WebhookDelivery.error,
                    WebhookDelivery.at,
                )
                .where(WebhookDelivery.deployment_id == deployment_id)
                .order_by(WebhookDelivery.id)
            )
        ).all()
    return DeploymentOut.model_validate(
        {
            **row._mapping,
            "events": [e._mapping for e in events],
            "deliveries": [d._mapping for d in deliveries],
        }
    )


LLM_TASKS = ("generate", "embed")  # the deployments chat and OpenAI's text routes reach
SERVING = ("ready", "webhook_failed")  # webhook_failed: ready, only its notification failed


class Served(NamedTuple):
    deployment_id: uuid.UUID
    endpoint_id: str
    own_account: bool  # in the tenant's RunPod account, not the stack's
    name: str  # the model name its worker serves (SERVED_MODEL_NAME)
    pool: str | None  # the RunPod GPU pool its workers run in


async def endpoint_of(
    engine: AsyncEngine, tenant: str, model: Any, tasks: tuple[str, ...]
) -> Served | None:
    """The endpoint serving the tenant's deployment named (or with the id) `model`; None when
    no deployment is; Conflict when it is not ready; InvalidInput when its task is not one of
    `tasks`."""
    if not isinstance(model, str):
        return None
    named = Deployment.name == model
    with contextlib.suppress(ValueError):
        named |= Deployment.id == uuid.UUID(model)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    Deployment.id,
                    Deployment.status,
                    Deployment.endpoint_id,
                    Deployment.own_account,
                    Deployment.error,
                    Deployment.task,
                    Deployment.name,
                    Deployment.gpu_type,
                ).where(Deployment.tenant == tenant, Deployment.status != "deleted", named)
            )
        ).first()
    if row is None:
        return None
    if row.task not in tasks:
        raise InvalidInput(f"model: deployment {model} serves task {row.task}, not this request")
    if row.status not in SERVING or row.error is not None:
        raise Conflict(f"deployment {model} is {row.status}: it serves once ready")
    return Served(row.id, row.endpoint_id, row.own_account, row.name, row.gpu_type)


async def ready_cards(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    """The tenant's serving deployments as OpenAI model cards (/v1/models)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(Deployment.name, Deployment.model, Deployment.created_at)
                .where(
                    Deployment.tenant == tenant,
                    Deployment.status.in_(SERVING),
                    Deployment.error.is_(None),
                )
                .order_by(Deployment.created_at)
            )
        ).all()
    return [
        {
            "id": row.name,
            "object": "model",
            "created": int(row.created_at.timestamp()),
            "owned_by": tenant,
            "root": row.model,
        }
        for row in rows
    ]


async def request_deletion(engine: AsyncEngine, deployment_id: uuid.UUID, tenant: str) -> bool:
    """Mark the deployment `deleting`, due at once; False when it is already deleted.
    NotFound for one that is not the tenant's."""
    async with engine.begin() as conn:
        status = await conn.scalar(
            select(Deployment.status).where(
                Deployment.id == deployment_id, Deployment.tenant == tenant
            )
        )
        if status is None:
            raise NotFound(f"deployment {deployment_id} not found")
        if status == "deleted":
            return False
        if status != "deleting":
            await transition(conn, deployment_id, "deleting", check_at=func.now())
    return True
