"""OpenAI's API, so that the OpenAI SDKs and the tools built on them can be pointed at Tandem:
`POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings` and `GET /v1/models`,
behind the API key and the rate limit. Chat and completions are answered by the llm worker's
own OpenAI serving (vLLM's), text embeddings by the embed worker's, through the inference
backend; the request is the worker's to check (every field vLLM takes; an unknown one is
refused). Embeddings whose `model` is the CLIP model (CLIP_MODEL) go to the CLIP worker.
A chat completion is stored as a turn only when it names a conversation (app.services.
openai_turns)."""

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Body, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

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
from app.inference.limited import check_openai_body
from app.schemas import error_responses
from app.services.chat import Replay, prompt_messages, replayed_turn, save_turn
from app.services.deployments import LLM_TASKS, ready_cards
from app.services.jobs import request_hash
from app.services.openai_embeddings import clip_embeddings
from app.services.openai_turns import (
    CONVERSATION_HEADER,
    StreamedAnswer,
    answer_result,
    completion,
    completion_events,
    turn_request,
)

router = keyed_router(tags=["openai"])

CHAT_EXAMPLE = {
    "model": "Qwen/Qwen2.5-0.5B-Instruct",
    "messages": [{"role": "user", "content": "Say hello"}],
    "max_tokens": 32,
}
COMPLETION_EXAMPLE = {"model": "Qwen/Qwen2.5-0.5B-Instruct", "prompt": "Tandem", "max_tokens": 8}
EMBEDDING_EXAMPLE = {
    "model": "openai/clip-vit-base-patch32",
    "input": ["a photo of a cat", "https://example.com/cat.png"],
}
STARTED = int(time.time())  # the CLIP model's `created` on /v1/models
OPENAI_ANSWER = {
    "description": "OpenAI's response; with `stream: true`, its Server-Sent Events "
    "(`data: {chunk}` ... `data: [DONE]`)",
    "content": {
        "text/event-stream": {
            "schema": {"type": "string"},
            "example": 'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", '
            '"model": "m", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
            'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m", '
            '"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
            "data: [DONE]\n\n",
        }
    },
}
OpenAIRequest = dict[str, Any]


class Serving:
    """Who answers an OpenAI request within this API's caps (`check_openai_body`): the
    tenant's deployment its `model` names (409 while it is not ready), else the stack's
    worker."""

    def __init__(
        self, request: Request, backend: BackendDep, caller: CallerDep, settings: SettingsDep
    ):
        self.backend, self.tenant, self.settings = backend, caller.tenant, settings
        self.runner = request.app.state.deployments

    async def openai(
        self, worker: str, route: str, body: OpenAIRequest
    ) -> dict[str, Any] | AsyncIterator[str]:
        check_openai_body(body, self.settings)
        deployed = await self.runner.backend_for(self.tenant, body.get("model"), LLM_TASKS)
        if deployed is None:
            return await self.backend.openai(worker, route, body)
        # Named by its name or its id: its worker knows it by its name.
        return await self.backend.via(deployed).openai(
            worker, route, {**body, "model": deployed.name}
        )


ServingDep = Annotated[Serving, Depends()]


async def _answer(
    serving: Serving,
    route: str,
    body: OpenAIRequest,
    request_id: str,
    worker: str = "llm",
    store: Callable[..., Awaitable[Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse | StreamingResponse:
    """The answer; `store(result=...)` is given the answer to store as a turn."""
    answer = await serving.openai(worker, route, body)
    if isinstance(answer, dict):
        if store is not None:
            await store(result=answer_result(answer), answer=answer)
        return JSONResponse(answer, headers=headers)
    events = await primed(_events(answer, request_id, store))
    headers = {**(headers or {}), "Cache-Control": "no-cache"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _events(
    text: AsyncIterator[str], request_id: str, store: Callable[..., Awaitable[Any]] | None
) -> AsyncIterator[str]:
    """OpenAI's events as they arrive: passed through as they come, or, with `store`, read
    whole so that the turn is stored before the last (`[DONE]`) unless the stream carried an
    error. An error before the first byte is raised (the request's status says it); after the
    200, it is an error event (the OpenAI SDKs raise it), and the stream ends."""
    answer = StreamedAnswer()
    sent = False
    try:
        async for piece in text:
            if store is None:  # nothing to read: no event parsed on the way
                sent = True
                yield piece
                continue
            for event in answer.events(piece):
                if event == "data: [DONE]" and not answer.failed:
                    await store(result=answer.result())
                sent = True
                yield event + "\n\n"
    except Exception as exc:
        if not sent:  # before the first byte: the request's error, with its status
            raise
        yield f"data: {json.dumps(in_band_error(exc, request_id))}\n\n"


@router.post(
    "/chat/completions",
    summary="Create a chat completion, as OpenAI's API does",
    description="With `user` and the `X-Conversation-Id` header (`new`, or the id of the "
    "user's conversation), the request's last message (the user's) and the first choice's "
    "answer are stored as a turn of that conversation (as by POST /v1/chat; the header comes "
    "back with the conversation's id). Without the header nothing is stored.",
    response_model=None,
    responses={200: OPENAI_ANSWER, **error_responses(400, 404, 413, 502, 504)},
)
async def chat_completions(
    body: Annotated[OpenAIRequest, Body(examples=[CHAT_EXAMPLE])],
    serving: ServingDep,
    engine: EngineDep,
    caller: CallerDep,
    request_id: RequestIdDep,
    conversation: Annotated[str | None, Header(alias=CONVERSATION_HEADER)] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse | StreamingResponse:
    turn = turn_request(body, conversation)
    if turn is None:
        return await _answer(serving, "/v1/chat/completions", body, request_id)
    hashed = (
        request_hash("chat/completions", conversation or "", json.dumps(body, sort_keys=True))
        if idempotency_key
        else ""
    )
    if (earlier := await replayed_turn(engine, caller.key_id, idempotency_key, hashed)) is not None:
        stored_in, answer = earlier
        headers = {CONVERSATION_HEADER: str(stored_in)}
        if body.get("stream") is True:
            events = iter(completion_events(answer))
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        return JSONResponse(answer, headers=headers)
    await prompt_messages(engine, turn, caller.tenant, 0)  # 404 unless the user's conversation
    serving.backend.meter.hold()  # the turn's usage is written with it
    conversation_id = turn.conversation_id or uuid.uuid4()
    headers = {CONVERSATION_HEADER: str(conversation_id)}
    replay = Replay(caller.key_id, idempotency_key, hashed) if idempotency_key else None

    async def store(result: dict[str, Any], answer: dict[str, Any] | None = None) -> None:
        """The turn, and with an Idempotency-Key the answer a retry gets (a streamed one's as
        a chat completion)."""
        kept = replay and dataclasses.replace(
            replay, answer=answer or completion(result, request_id)
        )
        await save_turn(
            engine,
            turn,
            result,
            request_id=request_id,
            tenant=caller.tenant,
            history=len(body["messages"]) - 1,
            new_id=conversation_id,
            replay=kept,
            meter=serving.backend.meter,
        )

    return await _answer(
        serving, "/v1/chat/completions", body, request_id, store=store, headers=headers
    )


@router.post(
    "/completions",
    summary="Create a text completion, as OpenAI's API does",
    response_model=None,
    responses={200: OPENAI_ANSWER, **error_responses(400, 404, 413, 502, 504)},
)
async def completions(
    body: Annotated[OpenAIRequest, Body(examples=[COMPLETION_EXAMPLE])],
    serving: ServingDep,
    request_id: RequestIdDep,
) -> JSONResponse | StreamingResponse:
    return await _answer(serving, "/v1/completions", body, request_id)


@router.post(
    "/embeddings",
    summary="Create embeddings, as OpenAI's API does",
    description="`model`: the text embedding model, or the CLIP model (CLIP_MODEL), whose "
    "`input` may mix texts and images (`data:image/...;base64,` or http(s) URLs) in one space.",
    response_model=None,
    responses={
        200: {"description": "OpenAI's embedding list"},
        **error_responses(400, 404, 413, 422, 502, 504),
    },
)
async def embeddings(
    body: Annotated[OpenAIRequest, Body(examples=[EMBEDDING_EXAMPLE])],
    serving: ServingDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> JSONResponse | StreamingResponse:
    if body.get("model") == settings.clip_model:
        check_openai_body(body, settings)
        return JSONResponse(await clip_embeddings(serving.backend, settings, body, request_id))
    return await _answer(serving, "/v1/embeddings", body, request_id, worker="embed")


@router.get(
    "/models",
    summary="List the models, as OpenAI's API does",
    description="The chat model, the text embedding model, the CLIP model and the tenant's "
    "deployments that are ready; no GPU worker is started for it.",
    responses={200: {"description": "OpenAI's model list"}, **error_responses(502, 504)},
)
async def models(
    backend: BackendDep, settings: SettingsDep, engine: EngineDep, caller: CallerDep
) -> JSONResponse:
    clip = {"id": settings.clip_model, "object": "model", "created": STARTED, "owned_by": "tandem"}
    cards = await backend.models()
    deployed = await ready_cards(engine, caller.tenant)
    return JSONResponse({"object": "list", "data": [*cards, clip, *deployed]})
