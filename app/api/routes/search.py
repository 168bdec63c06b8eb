"""`GET /v1/search`: documents' chunks or images ranked by similarity to a query."""

from typing import Annotated, Literal

from fastapi import Query

from app.api.deps import (
    BackendDep,
    CallerDep,
    EngineDep,
    RequestIdDep,
    SettingsDep,
    keyed_router,
)
from app.schemas import SearchResponse, error_responses
from app.services.search import FILTER_FIELDS, MAX_K, search

router = keyed_router(tags=["search"])


@router.get("/search", summary="Search documents or images", responses=error_responses(502, 504))
async def search_route(
    q: Annotated[str, Query(min_length=1, max_length=1000, pattern=r"\S")],
    settings: SettingsDep,
    engine: EngineDep,
    backend: BackendDep,
    request_id: RequestIdDep,
    caller: CallerDep,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 5,
    kind: Literal["text", "image"] = "text",
    filter: Annotated[
        str | None,
        Query(max_length=2000, description=f"JSON object matching {FILTER_FIELDS}"),
    ] = None,
) -> SearchResponse:
    """`kind=text` ranks document chunks; `kind=image` ranks images by CLIP's text tower."""
    hits = await search(engine, backend, settings, caller.tenant, q, k, kind, filter, request_id)
    return SearchResponse(hits=hits)
