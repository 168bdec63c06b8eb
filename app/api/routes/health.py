"""Liveness (`/health`, no dependencies) and readiness (`/readiness`: Postgres answers at this
release's schema revision, object storage takes objects, and the models the local backend runs
have loaded). Both are open: readiness says which checks fail, and its log says why."""

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.deps import EngineDep, StorageDep
from app.core.errors import DatabaseUnavailable, error_body, request_id_of
from app.core.migrations import pending_migrations
from app.schemas import ErrorBody
from app.storage import Storage, StorageUnavailable

router = APIRouter(tags=["health"])
log = logging.getLogger("tandem.readiness")
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
async def readiness(request: Request, engine: EngineDep, storage: StorageDep) -> JSONResponse:
    found = {
        "database": await _database(engine),
        "storage": await _storage(storage),
        **request.app.state.backend.checks(),
    }
    checks = {name: state.split(":", 1)[0] for name, state in found.items()}
    failing = [name for name, state in checks.items() if state not in ("ok", "ready")]
    if failing:
        for name in failing:
            log.warning("readiness: %s %s", name, found[name])
        message = f"not ready: {', '.join(f'{name} {checks[name]}' for name in failing)}"
        body = error_body("not_ready", message, request_id_of(request))
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
