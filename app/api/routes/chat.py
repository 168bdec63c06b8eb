"""`POST /v1/chat`: one turn of a conversation, as JSON or as Server-Sent Events."""

import json
import time
from collections.abc import AsyncIterator

from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, format_sse_event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.deps import (
    BackendDep,
    CallerDep,
    EngineDep,
    IdempotencyKey,
    RequestIdDep,
    SettingsDep,
    keyed_router,
)
from app.api.streams import in_band_error, primed
from app.core.errors import InvalidInput, WorkerFailed
from app.inference.limited import TenantBackend
from app.schemas import ChatRequest, ChatResponse, Source, error_responses
from app.services.chat import (
    Replay,
    grounded,
    job_input,
    prompt_messages,
    replayed_turn,
    retrieve,
    save_turn,
    storable,
)
from app.services.deployments import LLM_TASKS
from app.services.jobs import request_hash

router = keyed_router(tags=["chat"])


SSE_DESCRIPTION = (
    "Server-Sent Events instead: `delta` events as the answer's text arrives, then one `done` "
    "(the stored turn, as without streaming) or one `error` (the error shape; the stream then "
    "ends). The schema describes one event: its name and its `data`, JSON in `contentSchema`."
)


def _sse_event(name: str, data: dict) -> dict:
    """The schema of one Server-Sent Event `name` whose data is JSON in `data`'s schema."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
        },
    }


CHAT_EVENTS = {
    "schema": {
        "oneOf": [
            _sse_event(
                "delta",
                {
                    "type": "object",
                    "properties": {"delta": {"type": "string", "description": "more text"}},
                    "required": ["delta"],
                },
            ),
            _sse_event("done", {"$ref": "#/components/schemas/ChatResponse"}),
            _sse_event("error", {"$ref": "#/components/schemas/ErrorBody"}),
        ]
    },
    "example": 'event: delta\ndata: {"delta": "Hel"}\n\nevent: delta\ndata: {"delta": "lo"}\n\n'
    'event: done\ndata: {"assistant_message": "Hello", "conversation_id": "...", ...}\n\n',
}


def _event(name: str, data: object) -> bytes:
    return format_sse_event(event=name, data_str=json.dumps(data, default=str))


@router.post(
    "/chat",
    summary="Send a chat message and get the model's answer",
    response_model=ChatResponse,
    responses={
        200: {
            "description": "The stored turn; with `stream: true`, " + SSE_DESCRIPTION,
            "content": {"text/event-stream": CHAT_EVENTS},
            "headers": {
                "Server-Timing": {
                    "description": "`worker;dur=<ms>`: what the model took (not when streaming)",
                    "schema": {"type": "string"},
                }
            },
        },
        **error_responses(404, 413, 502, 504),
    },
)
async def chat(
    body: ChatRequest,
    settings: SettingsDep,
    engine: EngineDep,
    backend: BackendDep,
    request_id: RequestIdDep,
    caller: CallerDep,
    response: Response,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> ChatResponse | StreamingResponse:
    """With an Idempotency-Key, the turn is stored once: the same key and request again (a
    retry after a dropped connection) get the stored turn, streamed or not; another request
    with the key is a 422."""
    hashed = request_hash("chat", body.model_dump_json()) if idempotency_key else ""
    if (earlier := await replayed_turn(engine, caller.key_id, idempotency_key, hashed)) is not None:
        stored = ChatResponse.model_validate(earlier[1])
        if body.stream:
            return EventSourceResponse(_replayed(stored), headers={"Cache-Control": "no-cache"})
        return stored
    replay = Replay(caller.key_id, idempotency_key, hashed) if idempotency_key else None
    backend.meter.hold()  # the turn's usage is written with it
    generator = backend
    if body.model is not None:  # one of the tenant's deployments
        deployed = await request.app.state.deployments.backend_for(
            caller.tenant, body.model, LLM_TASKS
        )
        if deployed is None:
            raise InvalidInput(
                f"model: the tenant has no deployment {body.model!r} (leave model out for the "
                "stack's chat model)"
            )
        generator = backend.via(deployed)
    messages = await prompt_messages(engine, body, caller.tenant, settings.history_messages)
    history = len(messages) - 1  # before the new message
    sources = None
    if body.rag is not None:
        sources = await retrieve(
            engine, backend, settings, caller.tenant, body.message, body.rag, request_id
        )
        messages = grounded(messages, sources)
    payload = job_input(body, messages)
    if body.stream:
        events = _stream_events(
            generator, engine, body, payload, request_id, caller.tenant, history, sources, replay
        )
        return EventSourceResponse(await primed(events), headers={"Cache-Control": "no-cache"})
    started = time.perf_counter()
    result = await generator.generate(payload, request_id)
    # What the model took, apart from what the API adds around it (shown in browsers' devtools).
    response.headers["Server-Timing"] = f"worker;dur={(time.perf_counter() - started) * 1000:.3f}"
    return await save_turn(
        engine,
        body,
        result,
        request_id,
        caller.tenant,
        history,
        sources,
        replay=replay,
        meter=backend.meter,
    )


async def _replayed(stored: ChatResponse) -> AsyncIterator[bytes]:
    """A stored turn as its stream gave it: its text, then `done`."""
    yield _event("delta", {"delta": stored.assistant_message})
    yield _event("done", stored.model_dump(mode="json"))


async def _stream_events(
    backend: TenantBackend,
    engine: AsyncEngine,
    body: ChatRequest,
    payload: dict,
    request_id: str,
    tenant: str,
    history: int,
    sources: list[Source] | None,
    replay: Replay | None,
) -> AsyncIterator[bytes]:
    """`delta` events as tokens arrive, then `done` (the stored turn) or `error` (an error
    before the first event is raised: the request's status says it)."""
    sent = False
    try:
        result = None
        async for chunk in backend.generate_stream(payload, request_id):
            if "delta" in chunk:  # as it will be stored
                sent = True
                yield _event("delta", {"delta": storable(str(chunk["delta"]))})
            else:
                result = chunk
        if result is None:
            raise WorkerFailed("the worker's stream ended without a result")
        response = await save_turn(
            engine,
            body,
            result,
            request_id,
            tenant,
            history,
            sources,
            replay=replay,
            meter=backend.meter,
        )
        yield _event("done", response.model_dump(mode="json"))
    except Exception as exc:  # the 200 is already sent: report in-band, never as a broken stream
        if not sent:
            raise
        yield _event("error", in_band_error(exc, request_id))
