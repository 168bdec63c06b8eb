"""Liveness (`/health`, no dependencies) and readiness (`/readiness`: Postgres answers at this
release's schema revision, object storage takes objects, and the models the local backend runs
have loaded)."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.deps import BackendDep, EngineDep, StorageDep
from app.core.errors import DatabaseUnavailable, error_body, request_id_of
from app.core.migrations import pending_migrations
from app.schemas import ErrorBody
from app.storage import Storage, StorageUnavailable

router = APIRouter(tags=["health"])
READINESS_TIMEOUT_S = 3.0


@router.get("/health", summary="Is the process up (no dependencies checked)")
async def health() -> dict[str, bool]:
    return {"ok": True}


@router.get(
    "/readiness",
    summary="Can the API serve: database, object storage and models",
    responses={
        503: {
            "model": ErrorBody,
            "description": "Not ready: the message and `checks` name what failed",
        }
    },
)
async def readiness(
    request: Request, engine: EngineDep, storage: StorageDep, backend: BackendDep
) -> JSONResponse:
    checks = {
        "database": await _database(engine),
        "storage": await _storage(storage),
        **backend.checks(),
    }
    failing = {name: state for name, state in checks.items() if state not in ("ok", "ready")}
    if failing:
        problems = ", ".join(f"{name} {state}" for name, state in failing.items())
        body = error_body("not_ready", f"not ready: {problems}", request_id_of(request))
        return JSONResponse({**body, "checks": checks}, status_code=503)
    return JSONResponse({"ok": True, "checks": checks})


async def _database(engine: AsyncEngine) -> str:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            async with engine.connect() as conn:
                pending = await pending_migrations(conn)
    except DatabaseUnavailable as exc:  # the database's reason (e.g. Supabase's), no password
        return f"failed: {exc.detail or exc.message}"
    except Exception as exc:  # any failure means not ready; the check's name says which
        return f"failed: {type(exc).__name__}"
    return f"failed: {pending}" if pending else "ok"


async def _storage(storage: Storage) -> str:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            await asyncio.to_thread(storage.check)
    except StorageUnavailable as exc:  # the store's reason (e.g. Supabase's), no key
        return f"failed: {exc}"
    except TimeoutError:
        return f"failed: no answer within {READINESS_TIMEOUT_S:g} s"
    except Exception as exc:  # any other failure: not ready, without its details
        return f"failed: {type(exc).__name__}"
    return "ok"
