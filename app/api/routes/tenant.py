"""`/v1/tenant/runpod-key`: the tenant's own RunPod account, for its deployments (registered
once RunPod takes the key; shown only by its last characters; removed once no deployment of
the tenant's is left in that account). `/v1/tenant/webhook-secret`: a new secret for its
deployments' webhooks."""

from fastapi import Request, Response
from pydantic import BaseModel, Field

from app.api.deps import CallerDep, EngineDep, SettingsDep, keyed_router
from app.schemas import RunPodKeyIn, error_responses
from app.services import deployments, tenant_keys
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


class WebhookSecretOut(BaseModel):
    webhook_secret: str = Field(description="signs the tenant's webhooks from now on; shown once")


@router.post(
    "/tenant/webhook-secret",
    summary="Rotate the secret the tenant's webhooks are signed with",
    status_code=201,
)
async def rotate_webhook_secret(
    request: Request, engine: EngineDep, caller: CallerDep
) -> WebhookSecretOut:
    """A new secret replaces the old one at once (notifications from now on are signed with
    it); it is shown only in this answer and kept sealed."""
    keyring = request.app.state.deployments.keyring
    secret = await deployments.rotate_webhook_secret(engine, keyring, caller.tenant)
    return WebhookSecretOut(webhook_secret=secret)
