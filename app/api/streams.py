"""Streamed answers whose status is known before their first byte: an error before it is the
request's error with its own status (422, 404, 429...), as without streaming; once bytes are
sent, errors go in-band."""

from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def primed(events: AsyncIterator[T]) -> AsyncIterator[T]:
    """`events` with its first item already made: what goes wrong before it raises here."""
    first = await anext(events)

    async def rest() -> AsyncIterator[T]:
        yield first
        async for event in events:
            yield event

    return rest()
