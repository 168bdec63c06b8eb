"""`GET /v1/search`: documents' chunks or images ranked by similarity to a query."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api.deps import ApiKeyDep, BackendDep, EngineDep, RequestIdDep, SettingsDep
from app.schemas import SearchResponse
from app.services.search import FILTER_FIELDS, MAX_K, search

router = APIRouter(prefix="/v1", tags=["search"])


@router.get("/search")
async def search_route(
    q: Annotated[str, Query(min_length=1, max_length=1000, pattern=r"\S")],
    settings: SettingsDep,
    engine: EngineDep,
    backend: BackendDep,
    request_id: RequestIdDep,
    _key: ApiKeyDep,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 5,
    kind: Literal["text", "image"] = "text",
    filter: Annotated[
        str | None,
        Query(max_length=2000, description=f"JSON object matching {FILTER_FIELDS}"),
    ] = None,
) -> SearchResponse:
    """`kind=text` ranks document chunks; `kind=image` ranks images by CLIP's text tower."""
    hits = await search(engine, backend, settings, q, k, kind, filter, request_id)
    return SearchResponse(hits=hits)
