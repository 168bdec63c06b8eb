"""The work between a deployment's states, done by every API instance's background loop on
the deployments that are due (`check_at`), each claimed by one instance at a time: state
lives in Postgres only, so a restarted instance picks up where another left off.

validating → selecting_gpu: the model exists, may be read and runs on the worker (the Hub or
its directory). selecting_gpu → creating_endpoint: the allowed GPU pool that holds it, read in
RunPod's catalog (available pools first; none with capacity fails it at once, saying so).
creating_endpoint → downloading_model: a RunPod serverless endpoint (REST API v2) running the
stack's worker image for the task (the llm one; a diffusion model's, the imagegen one) with the
model, the task and the signed ready callback; an endpoint without a minimum of workers gets a
warm-up request, so that a worker starts. The worker's callbacks move it to `loading_model` once
it has the weights, then to `ready` (or `failed`, with its reason); a worker RunPod lists as
serving makes it `ready` too (a lost callback); workers that RunPod cannot place for want of
capacity fail it, saying so; past its deadline it fails. A failed deployment's endpoint is
removed; `deleting` tears down and ends `deleted`. Webhooks are the notifier's
(app/services/deployment_webhooks.py).
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

import httpx
from cachetools import TTLCache
from sqlalchemy import exists, func, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core import keys
from app.core.config import Settings
from app.core.errors import ApiError, InputRefused, Unauthorized
from app.inference.runpod import RunPodBackend, RunPodClient
from app.models import Deployment, DeploymentEvent
from app.services import deployment_webhooks, tenant_keys
from app.services.deployments import (
    deployment_image,
    due,
    endpoint_of,
    sources_of,
    transition,
)
from app.services.gpu_catalog import GpuCatalogs
from app.services.model_check import HubUnreachable, ModelRefused, check_model
from app.services.usage import Charge
from gpu_worker.common.signing import verify
from gpu_worker.common.worker_types import WORKER_TYPES
from runpod_api import catalog
from runpod_api.client import RunPodApiError, RunPodRest
from runpod_api.models import (
    EndpointCreate,
    EndpointUpdate,
    Gpu,
    Scaling,
    SecretCreate,
    SecretUpdate,
    Workers,
)
from runpod_api.names import deployment_name
from runpod_api.spec import SpecViolation

log = logging.getLogger("tandem.deployments")
T = TypeVar("T")

BATCH = 10  # deployments one turn works on at once
LEASE_S = 120  # how long a claimed deployment is another instance's to leave alone
HUB_RETRY_S = 30
HEALTH_EVERY_S = 30  # how often an endpoint not yet ready is looked at, at RunPod
UNHEALTHY_EVERY_S = 3  # ... and while a worker of it fails to start: each start is billed
LOG_LINES = 5  # of a worker that failed to start, in its deployment's reason
LOGS_IDLE_S = 1.0  # how long its logs are read for
MAX_REASON_CHARS = 2000
CONTAINER_DISK_GB = 30
WORKERS_TTL_S = 5.0  # how long a deployment's worker list, as RunPod gave it, is shown
# A light request that makes RunPod start a worker: the llm worker's model list; the imagegen
# worker refuses an empty input at once (its model loads before it takes a job).
WARM_UP: dict[str, dict[str, Any]] = {
    "generate": {"openai_route": "/v1/models", "openai_input": {}},
    "embed": {"openai_route": "/v1/models", "openai_input": {}},
    "image": {},
}
READY_PATH = "/internal/deployment-ready"  # the workers' callback, beside RunPod's job webhook

_CLAIM = text(
    """
    UPDATE deployments SET check_at = now() + make_interval(secs => :lease)
    WHERE id IN (
        SELECT id FROM deployments WHERE check_at <= now()
        ORDER BY check_at LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)


class Deployed(NamedTuple):
    backend: RunPodBackend
    name: str  # what its worker serves: an OpenAI request's `model` becomes this
    charge: Charge  # its GPU pool's price (the catalog snapshot's), and who RunPod bills


class DeploymentRunner:
    """One instance's share of the deployments' work, and the clients their endpoints answer
    through (one per RunPod account: the stack's, and tenants' own)."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        secret = settings.signing_secret
        self.signing_secret = secret.get_secret_value() if secret else None
        key = settings.runpod_api_key
        self.api_key = key.get_secret_value() if key else None
        self.keyring = tenant_keys.keyring_of(settings)
        self.catalogs = GpuCatalogs(settings)
        self._workers: TTLCache[str, list[dict]] = TTLCache(maxsize=4096, ttl=WORKERS_TTL_S)
        # Each deployment's failed worker starts seen: (worker, its start) -> when seen.
        self._unhealthy: dict[uuid.UUID, dict[tuple[str, str | None], float]] = {}
        # Where the workers' ready callbacks reach this API: its public address.
        self.public_base = (settings.webhook_base_url or settings.public_url).rstrip("/")
        self.every_s = settings.job_poll_seconds
        # The deployments' endpoints answer through RunPod's job API, as the stack's do: a
        # client per account (RunPod key), made at its first use.
        self._clients: dict[str | None, RunPodClient] = {}
        # The Hub's and RunPod's blocking calls run on threads of the runner's own: the
        # requests' (the default executor's, a few per CPU) are never queued behind them.
        self._threads = ThreadPoolExecutor(BATCH, thread_name_prefix="deployments")
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    # -- the loop -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop (a deployment it was on stays due: another turn finishes it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def aclose(self) -> None:
        await self.stop()
        await asyncio.gather(*(client.aclose() for client in self._clients.values()))
        self._threads.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        """Look at due deployments now (a new one, a callback), not at the next tick."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:  # the loop outlives a bad turn: the rows stay due
                log.exception("deployment runner turn failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.every_s)
            self._wake.clear()

    async def run_due(self) -> None:
        async with self.engine.begin() as conn:
            ids = (await conn.scalars(_CLAIM, {"lease": LEASE_S, "batch": BATCH})).all()
        await asyncio.gather(*(self.step(deployment_id) for deployment_id in ids))

    async def _blocking(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` on the runner's threads."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, call, *args)

    # -- one step -------------------------------------------------------------------------
    async def step(self, deployment_id: uuid.UUID) -> None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(Deployment).where(Deployment.id == deployment_id))
            ).one_or_none()
        if row is None:
            return
        handler = getattr(self, f"_{row.status}", None)  # `_<status>`: that status's handler
        if handler is None:  # ready, failed, ...: only their webhook may be due
            await deployment_webhooks.deliver(
                self.engine,
                self.keyring,
                row,
                self.settings.deployment_webhook_retry_seconds,
                public_only=not self.settings.on_one_machine,
            )
            return
        await handler(row)

    async def _validating(self, row: Row) -> None:
        try:
            key = await self.account_key(row.tenant, row.own_account)
            gpus = await self._blocking(self.catalogs.gpus, key)
            facts, pool = await self._blocking(
                check_model,
                row.model,
                row.task,
                self._hf_token(row),
                self.settings.hf_endpoint,
                gpus,
                self.settings.deployment_gpu_types,
                row.gpu,
            )
        except ModelRefused as exc:
            await self._fail(row, str(exc))
            return
        except (HubUnreachable, RunPodApiError) as exc:  # tried again until the deadline
            if row.deadline_at <= datetime.now(UTC):
                await self._fail(row, str(exc))
            else:
                await self._look_again(row, datetime.now(UTC) + timedelta(seconds=HUB_RETRY_S))
            return
        size = f"{facts.weight_bytes / 1e9:.2f} GB of weights"
        await self._move(row, "selecting_gpu", f"{', '.join(facts.architectures)}, {size}")
        await self._move(row, "creating_endpoint", f"chose GPU pool {pool}", gpu_type=pool)

    _selecting_gpu = _validating  # an instance stopped between the two: checked again

    async def _creating_endpoint(self, row: Row) -> None:
        key = await self.account_key(row.tenant, row.own_account)
        try:
            endpoint_id = await self._blocking(self._create_at_runpod, row, key)
        except (RunPodApiError, SpecViolation) as exc:  # RunPod's refusal, or the spec's
            await self._fail(row, f"RunPod refused the endpoint: {exc}")
            return
        async with self.engine.begin() as conn:
            moved = await transition(
                conn,
                row.id,
                "downloading_model",
                f"endpoint {endpoint_id} on {row.gpu_type}",
                endpoint_id=endpoint_id,
                hf_token=None,
                check_at=_next_look(row),
            )
        if not moved:  # deleted meanwhile: what was just made goes too
            await self._blocking(self._remove_at_runpod, key, row.id, None, endpoint_id)
        elif row.workers_min == 0:
            await self._warm_up(self.client(key), row.id, endpoint_id, row.task)

    async def _warm_up(
        self, client: RunPodClient, deployment_id: uuid.UUID, endpoint_id: str, task: str
    ) -> None:
        """An endpoint without a minimum of workers starts one only for a request: a light
        one (WARM_UP) makes it load the model and call back."""
        try:
            await client.run(endpoint_id, WARM_UP[task])
        except InputRefused:
            pass  # a worker answered: it has started
        except ApiError as exc:  # the deadline fails the deployment if no worker ever starts
            log.warning("deployment %s: the warm-up request failed: %s", deployment_id, exc)

    async def _downloading_model(self, row: Row) -> None:
        """Not ready yet: a worker RunPod lists as serving (idle or running) has loaded the
        model (ours serve only then), so the deployment is ready even if its callback was lost
        (an instance stopped before it noted the endpoint); workers RunPod cannot place for want
        of capacity fail it at once, and so do workers that keep failing to start (a crash
        loop, each start billed); else it fails past its deadline, or is looked at again (soon
        while a worker is unhealthy)."""
        key = await self.account_key(row.tenant, row.own_account)
        listed = await self._blocking(self._workers_at_runpod, key, row.endpoint_id)
        summary = listed.get("summary", {})
        failed_starts = self._failed_starts(row.id, listed.get("workers", []))
        if summary.get("running", 0) + summary.get("idle", 0) > 0:
            await self._make_ready(
                row, "RunPod reports a worker serving it (its callback did not arrive)"
            )
        elif failed_starts >= self.settings.deployment_max_failed_starts:
            await self._stop_crash_loop(row, key, failed_starts, listed["workers"])
        elif summary.get("throttled", 0) and summary.get("total") == summary["throttled"]:
            await self._fail(
                row, f"RunPod has no GPU free in pool {row.gpu_type} to start a worker on"
            )
        elif row.deadline_at <= datetime.now(UTC):
            seconds = self.settings.deployment_ready_seconds
            await self._fail(row, f"the worker did not report ready within {seconds} s")
        elif failed_starts:
            await self._look_again(row, datetime.now(UTC) + timedelta(seconds=UNHEALTHY_EVERY_S))
        else:
            await self._look_again(row, _next_look(row))

    _loading_model = _downloading_model

    def _failed_starts(self, deployment_id: uuid.UUID, workers: list[dict]) -> int:
        """The failed starts of a deployment's workers seen within the window
        (DEPLOYMENT_FAILED_STARTS_WINDOW_SECONDS): a worker RunPod lists as UNHEALTHY, once
        for each of its starts (`startedAt`)."""
        seen = self._unhealthy.setdefault(deployment_id, {})
        now = time.monotonic()
        for worker in workers:
            if worker.get("status") == "UNHEALTHY":
                seen.setdefault((worker["id"], worker.get("startedAt")), now)
        window = self.settings.deployment_failed_starts_window_seconds
        for start, at in list(seen.items()):
            if now - at > window:
                del seen[start]
        return len(seen)

    async def _stop_crash_loop(
        self, row: Row, key: str | None, failed_starts: int, workers: list[dict]
    ) -> None:
        """Scale the endpoint to no workers at once (no start more is billed), then fail the
        deployment with its workers' last log lines (which removes the endpoint)."""
        unhealthy = [w["id"] for w in workers if w.get("status") == "UNHEALTHY"]
        lines = await self._blocking(self._scale_to_zero, key, row.endpoint_id, unhealthy)
        self._unhealthy.pop(row.id, None)
        window = self.settings.deployment_failed_starts_window_seconds
        logged = " | ".join(lines) or "(none)"
        await self._fail(
            row,
            f"its workers failed to start {failed_starts} times within {window} s: stopped so "
            f"that no start more is billed; their last log lines: {logged}"[:MAX_REASON_CHARS],
        )

    def _scale_to_zero(self, key: str | None, endpoint_id: str, workers: list[str]) -> list[str]:
        """No workers for the endpoint (min and max 0); the last log lines of `workers`."""
        lines: list[str] = []
        with self._rest(key) as rest:
            try:
                rest.update_endpoint(endpoint_id, EndpointUpdate(workers=Workers(min=0, max=0)))
            except RunPodApiError as exc:  # failing it removes the endpoint all the same
                log.warning("endpoint %s was not scaled to 0: %s", endpoint_id, exc)
            for worker in workers[:1]:
                try:
                    for event in rest.worker_logs(
                        endpoint_id, worker, LOG_LINES, idle_s=LOGS_IDLE_S
                    ):
                        lines.append(event["line"])
                except httpx.ReadTimeout:
                    pass  # quiet for LOGS_IDLE_S: all it had was read
                except (RunPodApiError, httpx.HTTPError) as exc:
                    log.warning("worker %s: its logs could not be read: %s", worker, exc)
        return lines[-LOG_LINES:]

    def _workers_at_runpod(self, key: str | None, endpoint_id: str) -> dict[str, Any]:
        """The endpoint's workers as RunPod lists them (`workers`, and their `summary` by
        status); empty when they cannot be read (looked at again; the deadline still holds)."""
        try:
            with self._rest(key) as rest:
                return rest.workers(endpoint_id)
        except RunPodApiError as exc:
            log.warning("endpoint %s: its workers could not be read: %s", endpoint_id, exc)
            return {}

    async def workers(self, tenant: str, own_account: bool, endpoint_id: str) -> list[dict]:
        """A deployment's workers as RunPod lists them (status, GPU type, data centre), as
        RunPod answered in the last WORKERS_TTL_S: reading a deployment again and again asks
        RunPod once."""
        if (listed := self._workers.get(endpoint_id)) is None:
            key = await self.account_key(tenant, own_account)
            with self._rest(key) as rest:
                listed = (await self._blocking(rest.workers, endpoint_id))["workers"]
            self._workers[endpoint_id] = listed
        return listed

    async def _deleting(self, row: Row) -> None:
        await self.tear_down(row.id)

    async def tear_down(self, deployment_id: uuid.UUID) -> None:
        """Remove what a deployment has at RunPod (if it got as far as making anything there),
        then mark it `deleted`."""
        made = exists().where(
            DeploymentEvent.deployment_id == deployment_id,
            DeploymentEvent.status == "creating_endpoint",
        )
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        Deployment.template_id,
                        Deployment.endpoint_id,
                        Deployment.tenant,
                        Deployment.own_account,
                        made.label("made"),
                    ).where(Deployment.id == deployment_id)
                )
            ).one()
        if row.made or row.template_id or row.endpoint_id:
            key = await self.account_key(row.tenant, row.own_account)
            await self._blocking(
                self._remove_at_runpod, key, deployment_id, row.template_id, row.endpoint_id
            )
        async with self.engine.begin() as conn:
            await transition(conn, deployment_id, "deleted", check_at=None)

    # -- moving on ------------------------------------------------------------------------
    async def _move(self, row: Row, to: str, detail: str, **values: Any) -> bool:
        async with self.engine.begin() as conn:
            return await transition(conn, row.id, to, detail, check_at=func.now(), **values)

    async def _make_ready(self, row: Row, detail: str) -> bool:
        """`ready`, its webhook due now."""
        moved = await self._move(row, "ready", detail)
        self.wake()
        return moved

    async def _look_again(self, row: Row, at: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(due(row.id, at))

    async def _fail(self, row: Row, reason: str) -> bool:
        """`failed` with the reason (no secret: RunPod's messages come masked), once anything
        made at RunPod is removed; the webhook is then due. False when it could not fail
        (deleted, or already ready or failed)."""
        if row.status not in sources_of("failed"):
            return False
        log.info("deployment %s failed: %s", row.id, reason)
        if row.status not in ("validating", "selecting_gpu"):  # something may be at RunPod
            try:
                key = await self.account_key(row.tenant, row.own_account)
                await self._blocking(
                    self._remove_at_runpod, key, row.id, row.template_id, row.endpoint_id
                )
            except RunPodApiError as exc:
                log.warning("deployment %s: its endpoint was not removed: %s", row.id, exc)
        async with self.engine.begin() as conn:
            moved = await transition(
                conn, row.id, "failed", reason, error=reason, hf_token=None, check_at=func.now()
            )
        self.wake()
        return moved

    async def callback(
        self, body: bytes, auth: dict[str, Any], endpoint_id: str, stage: str, error: str | None
    ) -> bool:
        """The worker of `endpoint_id` fetched the weights and is loading them
        (`loading_model`), loaded them (`ready`, its webhook due) or could not (`failed`, with
        the worker's reason). False: nothing changed. Unauthorized unless the `body` is signed
        (`auth`) with that deployment's key."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(Deployment).where(Deployment.endpoint_id == endpoint_id))
            ).one_or_none()
        key = self.deployment_key(row.id) if row is not None else None
        if row is None or key is None or not verify(key, body, auth):
            raise Unauthorized("the callback's signature does not check out")
        if stage == "failed":
            return await self._fail(row, f"the worker could not load the model: {error}")
        if stage == "loading":  # due as it was: at its next look
            async with self.engine.begin() as conn:
                return await transition(
                    conn, row.id, "loading_model", "the worker fetched the weights"
                )
        return await self._make_ready(row, "the worker loaded the model")

    async def backend_for(self, tenant: str, model: Any, tasks: tuple[str, ...]) -> Deployed | None:
        """The inference backend of the tenant's deployment `model` (its name or id) of one of
        `tasks`, and the name its worker serves (None: no such deployment; Conflict while it is
        not ready; InvalidInput for another task's)."""
        served = await endpoint_of(self.engine, tenant, model, tasks)
        if served is None:
            return None
        client = self.client(await self.account_key(tenant, served.own_account))
        endpoints = dict.fromkeys(WORKER_TYPES, served.endpoint_id)
        backend = RunPodBackend(client, endpoints, self.deployment_key(served.deployment_id))
        price = catalog.price_per_second(
            catalog.pools(catalog.snapshot()["gpus"]).get(served.pool or "", [])
        )
        billed_to = "tenant" if served.own_account else "stack"
        return Deployed(backend, served.name, Charge(price, billed_to, served.deployment_id))

    def deployment_key(self, deployment_id: uuid.UUID) -> str | None:
        """The key the deployment's workers hold (None: no SIGNING_SECRET here)."""
        if self.signing_secret is None:
            return None
        return keys.deployment_key(self.signing_secret, deployment_id)

    def _hf_token(self, row: Row) -> str | None:
        return (
            tenant_keys.open_sealed(self.keyring, row.hf_token, row.tenant)
            if row.hf_token
            else None
        )

    # -- RunPod ---------------------------------------------------------------------------
    async def account_key(self, tenant: str, own_account: bool) -> str | None:
        """The RunPod key of the account a deployment is in: the tenant's own, or the
        stack's."""
        if not own_account:
            return self.api_key
        async with self.engine.connect() as conn:
            return await tenant_keys.tenant_key(conn, self.keyring, tenant)

    def client(self, key: str | None) -> RunPodClient:
        """The job API client of the account `key` opens (made once per key)."""
        if key not in self._clients:
            settings = self.settings
            self._clients[key] = RunPodClient(
                settings.runpod_api_base, key, settings.runpod_timeout_seconds
            )
        return self._clients[key]

    def _rest(self, key: str | None) -> RunPodRest:
        if key is None:
            raise RunPodApiError("POST", "/v2/serverless", 0, "RUNPOD_API_KEY is unset")
        return RunPodRest(key, self.settings.runpod_rest_api, backoff_s=0.5)

    def _create_at_runpod(self, row: Row, key: str | None) -> str:
        """An endpoint for the deployment, or the one of its name already there (made by an
        instance that stopped before it could note it). RunPod checks the whole body before it
        makes anything, so a refusal leaves nothing behind."""
        name = deployment_name(self.settings.deployment_name_prefix, row.id)
        env = {
            **row.env,
            "MODEL_NAME": row.model,
            "SERVED_MODEL_NAME": row.name,
            "READY_WEBHOOK_URL": self.public_base + READY_PATH,
            "VLLM_MAX_N_SEQUENCES": str(self.settings.max_n),
        }
        if row.task != "image":  # the llm worker's task
            env["TASK"] = row.task
        if self.settings.hf_endpoint:  # the Hub (or mirror) this API checked the model on
            env["HF_ENDPOINT"] = self.settings.hf_endpoint
        # Secrets reach the workers as references to RunPod secrets of the deployment's own,
        # in the account its endpoint is in: never as a value in the endpoint.
        secrets = {"SIGNING_KEY": self.deployment_key(row.id), "HF_TOKEN": self._hf_token(row)}
        with self._rest(key) as rest:
            if endpoint := _named(rest.list_endpoints(), name):
                return endpoint["id"]
            for variable, value in secrets.items():
                if value is not None:
                    env[variable] = _put_secret(rest, f"{name}-{variable.lower()}", value)
            gpus = self.catalogs.gpus(key)
            allowed = catalog.select(self.settings.deployment_gpu_types, gpus)
            excluded = [
                gpu["id"]
                for gpu in gpus
                if gpu.get("pool") == row.gpu_type and gpu["id"] in allowed.excluded_types
            ]
            body = EndpointCreate(
                name=name,
                image=deployment_image(self.settings, row.task),
                env=env,
                disk=CONTAINER_DISK_GB,
                registry=self.settings.deployment_registry_auth_id,
                gpu=Gpu(pools=[row.gpu_type], excluded_types=excluded or None),
                workers=Workers(
                    min=row.workers_min, max=row.workers_max, idle_timeout=row.idle_timeout
                ),
                scaling=Scaling(type="QUEUE_DELAY", queue_delay=4),
            )
            return rest.create_endpoint(body)["id"]

    def _remove_at_runpod(
        self,
        key: str | None,
        deployment_id: uuid.UUID,
        template_id: str | None,
        endpoint_id: str | None,
    ) -> None:
        """Delete the endpoint (and the template bound to it), its secrets, and a template of
        the previous release's deployments, which made one beside each endpoint; what is gone
        already is no error."""
        name = deployment_name(self.settings.deployment_name_prefix, deployment_id)
        with self._rest(key) as rest:
            if endpoint_id:
                rest.delete_endpoint(endpoint_id)
            if template_id:
                rest.delete_template(template_id)
            for secret in rest.list_secrets():
                if secret["name"].startswith(f"{name}-"):
                    rest.delete_secret(secret["id"])


def _next_look(row: Row) -> datetime:
    """When a deployment waiting for its worker is looked at next: soon, or at its deadline."""
    return min(datetime.now(UTC) + timedelta(seconds=HEALTH_EVERY_S), row.deadline_at)


def _put_secret(rest: RunPodRest, name: str, value: str) -> str:
    """A RunPod secret `name` holding `value` (made, or set again if an instance that stopped
    made it); the reference an endpoint's env holds."""
    if found := rest.list_secrets(name):
        rest.update_secret(found[0]["id"], SecretUpdate(value=value))
    else:
        rest.create_secret(SecretCreate(name=name, value=value))
    return f"{{{{ RUNPOD_SECRET_{name} }}}}"


def _named(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((item for item in items if item.get("name") == name), None)
