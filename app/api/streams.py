"""Streamed answers whose status is known before their first byte: an error before it is the
request's error with its own status (422, 404, 429...), as without streaming; once bytes are
sent, errors go in-band."""

import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from app.core.errors import ApiError, database_down, error_body

T = TypeVar("T")
log = logging.getLogger("tandem.streams")


async def primed(events: AsyncIterator[T]) -> AsyncIterator[T]:
    """`events` with its first item already made: what goes wrong before it raises here."""
    first = await anext(events)

    async def rest() -> AsyncIterator[T]:
        yield first
        async for event in events:
            yield event

    return rest()


def in_band_error(exc: Exception, request_id: str) -> dict[str, Any]:
    """The error body for what ended a stream after its first byte: the code the request
    would have got without streaming (an API error's own, `database_unavailable` for a lost
    connection), else `internal_error`, logged."""
    error = exc if isinstance(exc, ApiError) else database_down(exc)
    if error is None:
        log.error("stream failed", exc_info=exc, extra={"fields": {"request_id": request_id}})
        return error_body("internal_error", "internal error", request_id)
    return error_body(error.code, error.message, request_id)
