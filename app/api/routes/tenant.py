"""`/v1/tenant/runpod-key`: the tenant's own RunPod account, for its deployments (registered
once RunPod takes the key; shown only by its last characters; removed once no deployment of
the tenant's is left in that account)."""

from fastapi import Request, Response

from app.api.deps import CallerDep, EngineDep, SettingsDep, keyed_router
from app.schemas import RunPodKeyIn, error_responses
from app.services import tenant_keys
from app.services.tenant_keys import RunPodKeyOut

router = keyed_router(tags=["tenant"])


@router.put(
    "/tenant/runpod-key",
    summary="Register the tenant's RunPod API key",
    responses=error_responses(413),
)
async def put_runpod_key(
    body: RunPodKeyIn, request: Request, engine: EngineDep, settings: SettingsDep, caller: CallerDep
) -> RunPodKeyOut:
    """Checked with RunPod first (a key it refuses is a 422), then kept encrypted; the tenant's
    deployments from now on are made, served and removed in that account. Again: replaces it."""
    keyring = request.app.state.deployments.keyring
    return await tenant_keys.register(
        engine, settings, keyring, caller.tenant, body.runpod_key.get_secret_value()
    )


@router.get("/tenant/runpod-key", summary="Whether the tenant has a RunPod key")
async def get_runpod_key(engine: EngineDep, caller: CallerDep) -> RunPodKeyOut:
    return await tenant_keys.key_status(engine, caller.tenant)


@router.delete(
    "/tenant/runpod-key",
    summary="Forget the tenant's RunPod key",
    status_code=204,
    response_class=Response,
    responses=error_responses(409),
)
async def delete_runpod_key(engine: EngineDep, caller: CallerDep) -> None:
    """409 while deployments of the tenant's are in that account (it names them)."""
    await tenant_keys.remove(engine, caller.tenant)
