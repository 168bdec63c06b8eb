"""vLLM's async engine and its OpenAI serving, created once per worker process.

The only module that imports vLLM's internals: the handler sees `LlmEngine` and `EngineDeadError`.
"""

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import State
from vllm import AsyncEngineArgs, PoolingParams, SamplingParams
from vllm.entrypoints.launchers.api_server.app_state import init_app_state
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.openai.completion.protocol import CompletionRequest
from vllm.entrypoints.pooling.embed.protocol import EmbeddingRequest
from vllm.entrypoints.serve.exception_handling.error_response import create_error_response
from vllm.model_executor.model_loader import get_model_loader
from vllm.outputs import RequestOutput
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError

from gpu_worker.llm.engine_args import serve_args
from gpu_worker.llm.settings import LlmSettings

__all__ = ["EngineDeadError", "LlmEngine", "openai_error"]


def openai_error(message: str, status: int = 400, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body; `code` holds the HTTP status, as vLLM's do."""
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def _field_names(request_type: Any) -> frozenset[str]:
    """Every field (and alias) of an OpenAI request model, or of each model of a union."""
    models = getattr(request_type, "__args__", None) or (request_type,)
    if hasattr(request_type, "__metadata__"):  # Annotated[Union[...], validator]
        models = getattr(request_type.__origin__, "__args__", (request_type.__origin__,))
    names: set[str] = set()
    for model in models:
        for name, field in cast(type[BaseModel], model).model_fields.items():
            names |= {name, field.alias or name}
    return frozenset(names)


@dataclass(frozen=True)
class OpenAIRoute:
    """One of OpenAI's routes, as RunPod's `/openai/v1/...` passthrough names it in
    `openai_route`: its request (checked once per job, fields known once per process), the
    vLLM serving object (in init_app_state's State) that answers it, and how to ask it."""

    request: TypeAdapter[Any]
    fields: frozenset[str]
    server: str
    answer: Callable[[Any, Any], Awaitable[Any]]

    @classmethod
    def of(cls, request_type: Any, server: str, answer: Callable) -> "OpenAIRoute":
        return cls(TypeAdapter(request_type), _field_names(request_type), server, answer)


async def _embeddings(server: Any, request: Any) -> Any:
    return json.loads((await server(request, None)).body)  # vLLM answers a Response here


OPENAI_ROUTES = {
    "/v1/chat/completions": OpenAIRoute.of(
        ChatCompletionRequest,
        "openai_serving_chat",
        lambda server, request: server.create_chat_completion(request, None),
    ),
    "/v1/completions": OpenAIRoute.of(
        CompletionRequest,
        "openai_serving_completion",
        lambda server, request: server.create_completion(request, None),
    ),
    "/v1/embeddings": OpenAIRoute.of(EmbeddingRequest, "serving_embedding", _embeddings),
}


def _invalid(exc: ValidationError) -> dict[str, Any]:
    first = exc.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    return openai_error(f"{param or 'request'}: {first['msg']}", param=param)


class LlmEngine:
    def __init__(
        self, settings: LlmSettings, downloaded: Callable[[], object] = lambda: None
    ) -> None:
        """Fetch the model's weights (from the Hub, as vLLM's loader picks them; a directory has
        nothing to fetch), call `downloaded`, then load them into the engine."""
        self.args = serve_args(settings, os.environ)
        engine_args = AsyncEngineArgs.from_cli_args(self.args)
        config = engine_args.create_engine_config()
        get_model_loader(config.load_config).download_model(config.model_config)
        downloaded()
        self.engine = AsyncLLM.from_vllm_config(
            config,
            enable_log_requests=engine_args.enable_log_requests,
            disable_log_stats=engine_args.disable_log_stats,
        )
        self.model_id = settings.model_id
        self.max_model_len = self.engine.model_config.max_model_len
        self.tokenizer = self.engine.get_tokenizer()
        self._serving: State | None = None
        self._serving_lock = asyncio.Lock()

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of `messages` rendered with the model's chat template."""
        ids = self.tokenizer.apply_chat_template(
            messages,  # type: ignore[arg-type]  # plain role/content dicts: OpenAI's message shape
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        return cast(list[int], ids)  # tokenize=True: ids, not text

    def text_prompt(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt)

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        return self.engine.generate({"prompt_token_ids": prompt_ids}, params, request_id)

    async def embed(self, text: str, normalize: bool, request_id: str) -> tuple[list[float], int]:
        """One embedding and the number of tokens it read; a text longer than the model's
        context is cut to fit it (as sentence-transformers does)."""
        params = PoolingParams(task="embed", use_activation=normalize)
        ids = self.tokenizer(text, truncation=True, max_length=self.max_model_len)["input_ids"]
        final = None
        async for output in self.engine.encode({"prompt_token_ids": ids}, params, request_id):
            final = output
        assert final is not None
        return final.outputs.data.tolist(), len(final.prompt_token_ids)

    async def _openai_serving(self) -> State:
        """vLLM's OpenAI serving objects, as `vllm serve` builds them (once, on first use: they
        need the event loop the jobs run on)."""
        async with self._serving_lock:
            if self._serving is None:
                state = State()
                tasks = await self.engine.get_supported_tasks()
                await init_app_state(self.engine, state, self.args, tasks)
                self._serving = state
        return self._serving

    async def openai(self, route: str, body: Any) -> dict[str, Any] | AsyncIterator[str]:
        """vLLM's answer to an OpenAI request on `route`: the response body (an error's is
        `openai_error`'s shape), or for `stream` the Server-Sent Events' chunks (`data: ...`).
        A field the request type does not have is refused, never dropped."""
        try:
            serving = await self._openai_serving()
        except Exception as exc:  # e.g. TOOL_CALL_PARSER not for this model: native jobs go on
            return openai_error(f"the worker cannot serve OpenAI routes: {exc}", 500)
        if route == "/v1/models":
            return (await serving.openai_serving_models.show_available_models()).model_dump()
        if route not in OPENAI_ROUTES:
            known = ", ".join(["/v1/models", *OPENAI_ROUTES])
            return openai_error(f"unknown openai_route {route!r}: one of {known}", 404)
        known_route = OPENAI_ROUTES[route]
        server = getattr(serving, known_route.server, None)
        if server is None:
            return openai_error(f"this worker's model does not serve {route}", 404)
        if not isinstance(body, dict):
            return openai_error("openai_input must be a JSON object")
        if unknown := sorted(body.keys() - known_route.fields):
            return openai_error(f"unknown field(s): {', '.join(unknown)}", param=unknown[0])
        try:
            request = known_route.request.validate_python(body)
            result = await known_route.answer(server, request)
        except ValidationError as exc:
            return _invalid(exc)
        except EngineDeadError:
            raise
        except Exception as exc:  # vLLM's errors, mapped to statuses as vLLM's server does
            result = create_error_response(exc)
        if isinstance(result, BaseModel):  # a response, or an ErrorResponse
            return result.model_dump(mode="json")
        if isinstance(result, dict):  # embeddings, already a body
            return result
        return cast(AsyncIterator[str], result)

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def shutdown(self) -> None:
        self.engine.shutdown()
