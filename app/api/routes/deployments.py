"""`/v1/deployments`: models deployed at run time as RunPod endpoints (202 at once; the runner
validates and creates them after), read, listed and deleted per tenant; and the workers'
signed ready callback."""

import asyncio
import json
import logging
import uuid
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Header, Request, Response

from app.api.deps import CallerDep, EngineDep, PageCursor, PageLimit, SettingsDep, keyed_router
from app.core.errors import InvalidInput, WorkerFailed
from app.schemas import (
    DeploymentCreated,
    DeploymentIn,
    DeploymentOut,
    DeploymentSummary,
    DeploymentWorkerOut,
    Page,
    error_responses,
)
from app.services import deployments
from app.services.deployment_runner import READY_PATH, DeploymentRunner
from app.services.listing import list_deployments
from app.services.tenant_keys import RunPodUnreachable
from gpu_worker.common.ready import Stage
from runpod_api.client import RunPodApiError

log = logging.getLogger("tandem.deployments")

router = keyed_router(tags=["deployments"])
callback_router = APIRouter(include_in_schema=False)  # the workers': the signature is the key
STAGES = get_args(Stage)


def runner_of(request: Request) -> DeploymentRunner:
    return request.app.state.deployments


@router.post(
    "/deployments",
    summary="Deploy a model as a RunPod endpoint",
    status_code=202,
    responses=error_responses(403, 409, 413),
)
async def create_deployment(
    body: DeploymentIn,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> DeploymentCreated:
    """Answered at once, in `validating`; `GET /v1/deployments/{id}` follows it to `ready` (or
    `failed`, with the reason), and `webhook_url`, if given, is notified."""
    runner = runner_of(request)
    try:
        gpus = await asyncio.to_thread(runner.catalogs.gpus, runner.api_key)
    except RunPodApiError as exc:
        raise RunPodUnreachable(
            f"RunPod's GPU catalog could not be read (HTTP {exc.status or 'unreachable'}); "
            "try again"
        ) from None
    created = await deployments.create(engine, settings, runner.keyring, gpus, caller.tenant, body)
    runner.wake()
    return created


@router.get("/deployments", summary="List deployments")
async def list_deployments_route(
    engine: EngineDep, caller: CallerDep, limit: PageLimit = 50, cursor: PageCursor = None
) -> Page[DeploymentSummary]:
    return await list_deployments(engine, caller.tenant, limit, cursor)


@router.get(
    "/deployments/{deployment_id}",
    summary="Read a deployment, its history and webhook deliveries",
    responses=error_responses(404),
)
async def read_deployment(
    deployment_id: uuid.UUID, request: Request, engine: EngineDep, caller: CallerDep
) -> DeploymentOut:
    deployment = await deployments.get(engine, deployment_id, caller.tenant)
    if deployment.endpoint_id and deployment.status not in ("failed", "deleting", "deleted"):
        runner = runner_of(request)
        try:
            workers = await runner.workers(
                caller.tenant, deployment.own_account, deployment.endpoint_id
            )
        except RunPodApiError as exc:
            log.warning("deployment %s: its workers could not be read: %s", deployment_id, exc)
        else:
            deployment.workers = [
                DeploymentWorkerOut(
                    id=worker["id"],
                    status=worker["status"],
                    gpu_type=worker.get("gpuTypeId"),
                    data_center=worker.get("dataCenterId"),
                    stale=worker["isStale"],
                )
                for worker in workers
            ]
    return deployment


@router.delete(
    "/deployments/{deployment_id}",
    summary="Delete a deployment: its endpoint and template at RunPod too",
    status_code=204,
    responses=error_responses(404, 502),
)
async def delete_deployment(
    deployment_id: uuid.UUID, request: Request, engine: EngineDep, caller: CallerDep
) -> Response:
    """Idempotent: deleting a deleted deployment is a 204 as well. If RunPod cannot be
    reached, a 502 says so and the deletion is retried in the background."""
    if await deployments.request_deletion(engine, deployment_id, caller.tenant):
        try:
            await runner_of(request).tear_down(deployment_id)
        except RunPodApiError as exc:
            raise WorkerFailed(f"{exc}; the deletion is retried in the background") from None
    return Response(status_code=204)


@callback_router.post(READY_PATH)
async def worker_ready(
    request: Request,
    timestamp: Annotated[int, Header(alias="X-Tandem-Timestamp")],
    signature: Annotated[str, Header(alias="X-Tandem-Signature", max_length=64)],
) -> dict[str, Any]:
    """A deployment's worker is loading its model, loaded it or could not
    (gpu_worker/common/ready.py), signed with the key of that deployment's (a 401 otherwise)."""
    body = await request.body()
    try:
        message = json.loads(body)
        endpoint_id, stage = str(message["endpoint_id"]), message["status"]
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("body: expected {endpoint_id, model, status}") from None
    if stage not in STAGES:
        raise InvalidInput(f"status: expected one of {', '.join(STAGES)}")
    error = str(message.get("error") or "no reason given") if stage == "failed" else None
    auth = {"ts": timestamp, "sig": signature}
    changed = await runner_of(request).callback(body, auth, endpoint_id, stage, error)
    return {"ok": True, "changed": changed}
