"""Local mode's RunPod, for deployments: the local RunPod's control plane (runpod_api/emulator)
served beside the API on loopback, whose endpoints run the llm or imagegen worker as processes
on this machine (vLLM and diffusers on the CPU where there is no GPU). `make dev` deploys model
directories with it as a stack's API deploys Hub models on RunPod."""

import asyncio
import contextlib
import json
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.inference.local_models import worker_process_env
from app.models import Deployment
from app.services.deployments import transition
from app.storage.local import object_url_prefix

log = logging.getLogger("tandem.local")
# The worker images' stand-ins: each names the worker run as `python -m gpu_worker.<package>`.
LOCAL_IMAGE = "tandem/llm:local"
LOCAL_IMAGEGEN_IMAGE = "tandem/imagegen:local"


def serves_deployments(settings: Settings) -> bool:
    """Local mode with no RunPod of its own for deployments."""
    return (
        settings.environment == "local"
        and settings.inference_backend == "local"
        and settings.deployment_image is None
    )


class _Server(uvicorn.Server):
    """Leaves the signals to the API's server, whose shutdown stops this one."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uploads_allowed(settings: Settings) -> dict[str, str]:
    """What lets a deployment's worker fetch and upload through this API's local store (the
    URLs it signs are on loopback, which workers otherwise refuse): exactly those URLs."""
    if settings.storage_mode != "local":
        return {}
    return {"FETCH_ALLOWED_PREFIXES": json.dumps([object_url_prefix(settings.public_url)])}


@contextlib.asynccontextmanager
async def local_runpod(settings: Settings) -> AsyncIterator[Settings]:
    """Serve the control plane while the block runs; yields `settings` pointed at it."""
    from runpod_api.emulator.server import create_app  # local mode only

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    key = secrets.token_urlsafe(24)
    emulator = create_app(
        {},
        base,
        api_key=key,
        images={LOCAL_IMAGE: "gpu_worker.llm", LOCAL_IMAGEGEN_IMAGE: "gpu_worker.imagegen"},
        machine_env=worker_process_env() | uploads_allowed(settings),
    )
    server = _Server(uvicorn.Config(emulator, log_level="warning", timeout_graceful_shutdown=3))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
            raise RuntimeError("the local RunPod control plane stopped as it started")
        await asyncio.sleep(0.05)
    log.info("deployments: a local RunPod control plane on %s runs their workers here", base)
    # The workers' callbacks are signed: with a secret of this run's where none is set.
    secret = settings.signing_secret or SecretStr(secrets.token_urlsafe(32))
    try:
        yield settings.model_copy(
            update={
                "runpod_rest_api": base,
                "runpod_api_base": f"{base}/v2",
                "runpod_api_key": SecretStr(key),
                "deployment_image": LOCAL_IMAGE,
                "deployment_imagegen_image": LOCAL_IMAGEGEN_IMAGE,
                "signing_secret": secret,
            }
        )
    finally:
        server.should_exit = True
        await serving
        listener.close()


async def forget_earlier_runs(engine: AsyncEngine) -> None:
    """Deployments made on an earlier run's local RunPod, whose endpoints ended with that run,
    are deleted (marked `deleting`, saying why; the runner finishes)."""
    async with engine.begin() as conn:
        ids = (
            await conn.scalars(
                select(Deployment.id).where(Deployment.status.not_in(("deleting", "deleted")))
            )
        ).all()
        for deployment_id in ids:
            await transition(
                conn,
                deployment_id,
                "deleting",
                "its endpoint ended with an earlier run of the local RunPod",
                check_at=func.now(),
            )
    if ids:
        log.info("deployments: %d of an earlier run are deleted with its RunPod", len(ids))
