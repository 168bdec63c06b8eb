"""OpenAI's API, so that the OpenAI SDKs and the tools built on them can be pointed at Tandem:
`POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings` and `GET /v1/models`,
behind the API key and the rate limit. Chat and completions are answered by the llm worker's
own OpenAI serving (vLLM's), text embeddings by the embed worker's, through the inference
backend; the request is the worker's to check (every field vLLM takes; an unknown one is
refused). Embeddings whose `model` is the CLIP model (CLIP_MODEL) go to the CLIP worker.
Nothing is stored."""

import asyncio
import time
from typing import Annotated, Any

from fastapi import Body
from fastapi.responses import JSONResponse, StreamingResponse

from app.api.deps import BackendDep, RequestIdDep, SettingsDep, keyed_router
from app.inference.base import InferenceBackend
from app.schemas import error_responses
from app.services.openai_embeddings import clip_embeddings

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
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
OpenAIRequest = dict[str, Any]


async def _answer(
    backend: InferenceBackend, route: str, body: OpenAIRequest, worker: str = "llm"
) -> JSONResponse | StreamingResponse:
    answer = await backend.openai(worker, route, body)
    if isinstance(answer, dict):
        return JSONResponse(answer)
    headers = {"Cache-Control": "no-cache"}
    return StreamingResponse(answer, media_type="text/event-stream", headers=headers)


@router.post(
    "/chat/completions",
    summary="Create a chat completion, as OpenAI's API does",
    response_model=None,
    responses={200: OPENAI_ANSWER, **error_responses(400, 404, 413, 502, 504)},
)
async def chat_completions(
    body: Annotated[OpenAIRequest, Body(examples=[CHAT_EXAMPLE])], backend: BackendDep
) -> JSONResponse | StreamingResponse:
    return await _answer(backend, "/v1/chat/completions", body)


@router.post(
    "/completions",
    summary="Create a text completion, as OpenAI's API does",
    response_model=None,
    responses={200: OPENAI_ANSWER, **error_responses(400, 404, 413, 502, 504)},
)
async def completions(
    body: Annotated[OpenAIRequest, Body(examples=[COMPLETION_EXAMPLE])], backend: BackendDep
) -> JSONResponse | StreamingResponse:
    return await _answer(backend, "/v1/completions", body)


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
    backend: BackendDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> JSONResponse | StreamingResponse:
    if body.get("model") == settings.clip_model:
        return JSONResponse(await clip_embeddings(backend, settings, body, request_id))
    return await _answer(backend, "/v1/embeddings", body, worker="embed")


@router.get(
    "/models",
    summary="List the models, as OpenAI's API does",
    description="The chat model (and its LoRA adapters), the text embedding model and the CLIP "
    "model.",
    responses={200: {"description": "OpenAI's model list"}, **error_responses(502, 504)},
)
async def models(backend: BackendDep, settings: SettingsDep) -> JSONResponse:
    served = await asyncio.gather(
        *(backend.openai(worker, "/v1/models", {}) for worker in ("llm", "embed"))
    )
    clip = {"id": settings.clip_model, "object": "model", "created": STARTED, "owned_by": "tandem"}
    cards = [card for answer in served for card in answer["data"]]  # type: ignore[index]
    return JSONResponse({"object": "list", "data": [*cards, clip]})
