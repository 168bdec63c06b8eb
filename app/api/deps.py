"""Dependencies the routes declare: settings, database, inference backend, storage, the caller's
key."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.config import Settings
from app.core.errors import Unauthorized, request_id_of
from app.inference.limited import TenantBackend
from app.schemas import error_responses
from app.services.api_keys import Caller
from app.services.jobs import JobRunner
from app.services.usage import Meter
from app.storage import Storage


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_engine(request: Request) -> AsyncEngine:
    return request.app.state.engine


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


# What a request takes from its key's rate limit (RATE_LIMIT_PER_MINUTE tokens a minute): work
# on a GPU weighs more than a listing (a transcription or a drawn image as 10 or 20 listings).
ROUTE_COSTS = {
    ("POST", "/v1/chat"): 2,
    ("POST", "/v1/chat/completions"): 2,
    ("POST", "/v1/completions"): 2,
    ("POST", "/v1/embeddings"): 2,
    ("GET", "/v1/search"): 2,
    ("POST", "/v1/documents"): 5,
    ("POST", "/v1/images"): 5,
    ("POST", "/v1/jobs"): 10,
    ("POST", "/v1/audio/transcriptions"): 10,
    ("POST", "/v1/audio/translations"): 10,
    ("POST", "/v1/images/generations"): 20,
    ("POST", "/v1/deployments"): 20,
}

_bearer = HTTPBearer(auto_error=False, description="An API key from `python -m app create-api-key`")


async def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller of a request with a valid key (401 otherwise). Every `/v1` router requires
    it (`keyed_router`), so a new route cannot forget to; FastAPI runs it once a request."""
    if credentials is None:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    route = (request.method, getattr(request.scope.get("route"), "path", ""))
    cost = ROUTE_COSTS.get(route, 1)
    # Routes with a cost of their own reach a worker (or make one): budgets are checked.
    caller = await request.app.state.authenticator.caller(
        credentials.credentials, cost, metered=route in ROUTE_COSTS
    )
    request.state.api_key_id = str(caller.key_id)
    return caller


async def get_backend(
    request: Request, caller: Annotated[Caller, Depends(current_caller)]
) -> AsyncIterator[TenantBackend]:
    """The inference backend as the caller's tenant may use it, its work metered as this
    request's (app/inference/limited.py): rows a stored turn did not write go to the writer."""
    state = request.app.state
    route = getattr(request.scope.get("route"), "path", request.url.path)
    meter = Meter(
        state.usage, state.prices, caller.tenant, caller.key_id, route, request_id_of(request)
    )
    try:
        yield TenantBackend(state.backend, state.slots, meter)
    finally:
        meter.give_back(meter.take())


def keyed_router(**kwargs: Any) -> APIRouter:
    """A `/v1` router whose every route requires an API key, and documents the errors any of
    them can give (routes add their own)."""
    return APIRouter(
        prefix="/v1",
        dependencies=[Depends(current_caller)],
        responses=error_responses(401, 422, 429, 503),
        **kwargs,
    )


# Dependencies are `async def` so FastAPI runs them inline instead of in its thread pool.
async def get_storage(request: Request) -> Storage:
    return request.app.state.storage


async def get_jobs(request: Request) -> JobRunner:
    return request.app.state.jobs


async def get_request_id(request: Request) -> str:
    return request_id_of(request)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Send the same key again with the same request to get what the first one "
        "made (its job, or its stored turn) instead of making it again",
    ),
]
SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
BackendDep = Annotated[TenantBackend, Depends(get_backend)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CallerDep = Annotated[Caller, Depends(current_caller)]
# A list's paging: how many at a time, and where the last page ended (its `next_cursor`).
PageLimit = Annotated[int, Query(ge=1, le=100)]
PageCursor = Annotated[str | None, Query(max_length=200)]
SourceIdPrefix = Annotated[str | None, Query(max_length=200)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
