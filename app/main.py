"""The FastAPI application: `create_app()`, and `app` for uvicorn (`app.main:app`)."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.routes import (
    audio,
    chat,
    conversations,
    deployments,
    documents,
    health,
    images,
    jobs,
    objects,
    openai,
    search,
    tenant,
    usage,
)
from app.api.upload_body import upload_paths
from app.core.config import Settings, get_settings
from app.core.db import connect_args, make_engine, make_sessionmaker, open_database
from app.core.envelope import Keyring
from app.core.errors import DatabaseUnavailable, install_error_handlers
from app.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.core.migrations import check_vector_dims, migrate
from app.inference import InferenceBackend, make_backend
from app.inference.limited import TenantSlots
from app.services import tenant_keys
from app.services.api_keys import Authenticator
from app.services.budgets import BudgetAlerts
from app.services.deployment_runner import DeploymentRunner
from app.services.jobs import JobRunner
from app.services.local_runpod import forget_earlier_runs, local_runpod, serves_deployments
from app.services.usage import UsageWriter, stack_prices
from app.storage import make_storage

log = logging.getLogger("tandem.app")
UPLOAD_ENVELOPE_BYTES = 64 * 1024  # multipart boundaries and fields around an uploaded file


@asynccontextmanager
async def _serving(
    app: FastAPI, settings: Settings, backend: InferenceBackend | None
) -> AsyncIterator[None]:
    """The app's state for `settings`: database, storage, inference and the background runners."""
    url, local_postgres = open_database(settings)
    engine = make_engine(url, settings.db_pool_size, connect_args(settings))
    if settings.migrate_on_start:
        await migrate(engine, settings)
    try:
        await check_vector_dims(engine, settings)
    except DatabaseUnavailable:  # /readiness says so; the check runs on the next start
        log.warning("the vector columns were not checked: the database is unavailable")
    app.state.settings = settings
    app.state.engine = engine
    app.state.authenticator = Authenticator(engine, settings.rate_limit_per_minute)
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.storage = make_storage(settings)
    app.state.backend = backend or make_backend(settings)
    await app.state.backend.start()
    app.state.slots = TenantSlots(settings.tenant_concurrency)
    app.state.prices = stack_prices(settings)  # what usage rows cost a worker second
    app.state.jobs = JobRunner(
        engine, app.state.backend, app.state.storage, settings, app.state.prices
    )
    app.state.jobs.start()
    app.state.deployments = DeploymentRunner(engine, settings)
    alerts = BudgetAlerts(engine, app.state.deployments.keyring, not settings.on_one_machine)
    app.state.usage = UsageWriter(engine, on_written=alerts)
    app.state.usage.start()
    await _rewrap_tenant_keys(engine, app.state.deployments.keyring)
    app.state.deployments.start()
    keeper = (
        asyncio.create_task(local_postgres.keep_running(engine.dispose)) if local_postgres else None
    )
    try:
        yield
    finally:
        if keeper:
            keeper.cancel()
        await app.state.deployments.aclose()
        await app.state.jobs.stop()
        await app.state.usage.stop()
        if backend is None:
            await app.state.backend.aclose()
        await engine.dispose()


async def _rewrap_tenant_keys(engine: AsyncEngine, keyring: Keyring | None) -> None:
    """Tenants' RunPod keys sealed under a KEK before the current one, sealed under it."""
    if keyring is None:
        return
    try:
        if rewrapped := await tenant_keys.rewrap_all(engine, keyring):
            log.info("%d tenant RunPod keys wrapped with KEK %s", rewrapped, keyring.current)
    except DatabaseUnavailable:  # done at the next start
        log.warning("tenant RunPod keys were not rewrapped: the database is unavailable")


def create_app(
    settings: Settings | None = None, backend: InferenceBackend | None = None
) -> FastAPI:
    """The app; `backend` replaces the one the settings name (its owner starts and closes it)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            running = settings
            if serves_deployments(settings):  # local mode: deployments on a local RunPod
                running = await stack.enter_async_context(local_runpod(settings))
            await stack.enter_async_context(_serving(app, running, backend))
            if running is not settings:
                await forget_earlier_runs(app.state.engine)
            yield

    # No redirect for a trailing slash: a bodiless 307 that clients drop their body on.
    # /docs works offline: Swagger UI's assets come from the fastapi-offline package.
    app = FastAPIOffline(
        title="Tandem API", version="0.1.0", lifespan=lifespan, redirect_slashes=False
    )
    install_error_handlers(app)
    for module in (
        health,
        chat,
        conversations,
        deployments,
        documents,
        images,
        search,
        jobs,
        objects,
        openai,
        audio,
        tenant,
        usage,
    ):
        app.include_router(module.router)
    app.include_router(jobs.webhook_router)
    app.include_router(deployments.callback_router)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_upload_bytes + UPLOAD_ENVELOPE_BYTES,
        upload_paths=upload_paths(app),
    )
    app.add_middleware(RequestContextMiddleware)  # outermost: every response gets the id
    return app


app = create_app()
