"""OpenAI's API, so that the OpenAI SDKs and the tools built on them can be pointed at Tandem:
`POST /v1/chat/completions`, `POST /v1/completions` and `GET /v1/models`, answered by the llm
worker's own OpenAI serving (vLLM's) through the inference backend, behind the API key and the
rate limit. The request is the worker's to check (every field vLLM takes; an unknown one is
refused); nothing is stored."""

from typing import Annotated, Any

from fastapi import Body
from fastapi.responses import JSONResponse, StreamingResponse

from app.api.deps import BackendDep, keyed_router
from app.inference.base import InferenceBackend
from app.schemas import error_responses

router = keyed_router(tags=["openai"])

CHAT_EXAMPLE = {
    "model": "Qwen/Qwen2.5-0.5B-Instruct",
    "messages": [{"role": "user", "content": "Say hello"}],
    "max_tokens": 32,
}
COMPLETION_EXAMPLE = {"model": "Qwen/Qwen2.5-0.5B-Instruct", "prompt": "Tandem", "max_tokens": 8}
OPENAI_ANSWER = {
    "description": "OpenAI's response; with `stream: true`, its Server-Sent Events "
    "(`data: {chunk}` ... `data: [DONE]`)",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
OpenAIRequest = dict[str, Any]


async def _answer(
    backend: InferenceBackend, route: str, body: OpenAIRequest
) -> JSONResponse | StreamingResponse:
    answer = await backend.openai("llm", route, body)
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


@router.get(
    "/models",
    summary="List the models, as OpenAI's API does",
    responses={200: {"description": "OpenAI's model list"}, **error_responses(502, 504)},
)
async def models(backend: BackendDep) -> JSONResponse:
    answer = await backend.openai("llm", "/v1/models", {})
    return JSONResponse(answer)
