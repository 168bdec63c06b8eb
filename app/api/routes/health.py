"""Liveness (`/health`, no dependencies) and readiness (`/readiness`, Postgres answers)."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import EngineDep
from app.core.errors import error_body, request_id_of

router = APIRouter(tags=["health"])
READINESS_TIMEOUT_S = 3.0


@router.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@router.get("/readiness")
async def readiness(request: Request, engine: EngineDep) -> JSONResponse:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; the check's name says which
        message = f"database check failed: {type(exc).__name__}"
        body = error_body("not_ready", message, request_id_of(request))
        return JSONResponse({**body, "checks": {"database": "failed"}}, status_code=503)
    return JSONResponse({"ok": True, "checks": {"database": "ok"}})
