"""The LLM worker's handler: chat generation (streamed or not), text embeddings, and OpenAI's
routes.

`handle` is an async generator, as the runpod SDK needs for streaming: without `stream` it
yields one result, with `stream` it yields `{"delta": text}` chunks and then the result. Every
failure is one `{"error", "request_id"}` item and the worker goes on to the next job; an input
the client must fix (invalid, a prompt over the context, `max_tokens` beyond what it leaves) is
a refusal (gpu_worker.common.refusal), as is a field the native input does not know (for `n`,
`logprobs`, `tools` and the rest of OpenAI's fields, send an OpenAI job).

A job of RunPod's OpenAI passthrough (`{"openai_route": "/v1/chat/completions",
"openai_input": {...}}`, what an endpoint's `/openai/v1/...` routes send) is answered by vLLM's
own OpenAI serving, in this process: the response body, or with `stream` its Server-Sent Events
(`data: {chunk}\n\n` strings, then `data: [DONE]`). An OpenAI error fails the job; its text
is OpenAI's error body as JSON, whose `code` is the HTTP status.

`handle` serves the model the environment names (LlmSettings); the API's local backend makes
its own `LlmWorker`s, one per task, from its settings.
"""

import asyncio
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from vllm import SamplingParams
from vllm.exceptions import VLLMClientError
from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

from gpu_worker.common.refusal import Refused, TooLarge, input_object
from gpu_worker.llm.engine import EngineDeadError, LlmEngine, openai_error
from gpu_worker.llm.settings import LlmSettings

NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class JsonSchema(BaseModel):
    name: str = "answer"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool = True


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: the answer is JSON valid in `json_schema.schema`."""

    type: Literal["json_schema"]
    json_schema: JsonSchema


class GenerateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] | None = Field(None, min_length=1)
    prompt: NonEmpty | None = None
    max_tokens: int | None = Field(None, ge=1)
    min_tokens: int = Field(0, ge=0)
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=-1)  # 0 or -1: every token
    min_p: float = Field(0.0, ge=0, le=1)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    repetition_penalty: float = Field(1.0, gt=0, le=2)
    stop: list[str] | str | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    stream: bool = False
    # Leave out the oldest turns of `messages` until the prompt leaves room for the answer
    # (`max_tokens`, else the default): never a system message, never the last message.
    fit_context: bool = False

    @model_validator(mode="after")
    def _one_prompt(self) -> "GenerateInput":
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages or prompt")
        return self


class EmbedInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: NonEmpty | Annotated[list[NonEmpty], Field(min_length=1)]
    normalize: bool = True


def _describe(exc: ValidationError) -> str:
    described = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'input'}: {error['msg']}"
        for error in exc.errors()[:5]
    )
    if any(error["type"] == "extra_forbidden" for error in exc.errors()):
        described += " (for OpenAI's other fields, send an OpenAI job: openai_route)"
    return described


def _fitted(
    llm: LlmEngine, messages: list[dict[str, str]], wanted: int
) -> tuple[list[dict[str, str]], list[int]]:
    """`messages` without their oldest turns, as few as leave `wanted` tokens of the model's
    context for the answer (all of them when they fit), and their prompt's token ids (each
    candidate is rendered once). System messages and the last message
    always stay, in their places; what goes is whole turns, so the conversation still opens
    with a user message (chat templates that check that roles alternate accept it). When even
    the shortest prompt leaves less room, it is that prompt: the sampling limits decide."""
    last = len(messages) - 1
    starts = [i for i, m in enumerate(messages[:last]) if m["role"] == "user"]
    cuts = [0, *starts[1:], last]  # keep the turns from this index on

    def kept(cut: int) -> list[dict[str, str]]:
        return [m for i, m in enumerate(messages) if i >= cut or m["role"] == "system"]

    @functools.cache
    def prompt(cut: int) -> list[int]:
        return llm.chat_prompt(kept(cut))

    def fits(cut: int) -> bool:
        return len(prompt(cut)) + wanted <= llm.max_model_len

    if fits(0):
        return messages, prompt(0)
    low, high = 1, len(cuts) - 1  # the first cut that fits, by bisection (prompts only shrink)
    while low < high:
        middle = (low + high) // 2
        if fits(cuts[middle]):
            high = middle
        else:
            low = middle + 1
    return kept(cuts[low]), prompt(cuts[low])


def _sampling(
    request: GenerateInput, prompt_tokens: int, llm: LlmEngine, default_max_tokens: int
) -> SamplingParams:
    room = llm.max_model_len - prompt_tokens
    if room < 1:
        raise TooLarge(
            f"the prompt is {prompt_tokens} tokens; the model's context is {llm.max_model_len}"
        )
    if request.max_tokens is not None and request.max_tokens > room:
        raise Refused(
            f"max_tokens {request.max_tokens} does not fit: the prompt is {prompt_tokens} tokens "
            f"of the model's {llm.max_model_len}, leaving {room}"
        )
    structured = None
    if request.response_format is not None:
        structured = StructuredOutputsParams(json=request.response_format.json_schema.schema_)
    return SamplingParams(
        max_tokens=request.max_tokens or min(default_max_tokens, room),
        min_tokens=request.min_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        min_p=request.min_p,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        repetition_penalty=request.repetition_penalty,
        stop=request.stop,
        seed=request.seed,
        structured_outputs=structured,
        output_kind=RequestOutputKind.DELTA if request.stream else RequestOutputKind.FINAL_ONLY,
    )


class LlmWorker:
    """One model in vLLM's async engine, answering jobs for its task (generate or embed)."""

    def __init__(self, settings: LlmSettings) -> None:
        self.settings = settings
        self._engine: LlmEngine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> LlmEngine:
        """The engine, started on first use (the worker's __main__ starts it before serving)."""
        return self.load()

    def load(self, downloaded: Callable[[], object] = lambda: None) -> LlmEngine:
        """The engine, started now if it is not yet (`downloaded`: called once the weights are
        fetched, before they load)."""
        with self._lock:
            if self._engine is None:
                self._engine = LlmEngine(self.settings, downloaded)
            return self._engine

    def shutdown(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.shutdown()
                self._engine = None

    async def handle(self, job: dict[str, Any]) -> AsyncIterator[dict[str, Any] | str]:
        """Answer one RunPod job (see the module docstring)."""
        request_id = str(job.get("id"))
        try:
            job_input = input_object(job)
            if "openai_route" in job_input:
                async for item in self._openai(job_input, request_id):
                    yield item
            elif self.settings.task == "embed":
                yield await self._embed(job_input, request_id)
            else:
                async for chunk in self._generate(job_input, request_id):
                    yield chunk
        except ValidationError as exc:
            yield Refused(_describe(exc)).report(request_id)
        except Refused as exc:
            yield exc.report(request_id)
        except EngineDeadError:
            # The engine is gone (e.g. out of GPU memory): fail this job and let RunPod replace
            # the worker instead of retrying forever on a broken one.
            yield {
                "error": "the inference engine failed",
                "request_id": request_id,
                "refresh_worker": True,
            }

    async def _openai(
        self, job_input: dict[str, Any], request_id: str
    ) -> AsyncIterator[dict[str, Any] | str]:
        route = job_input["openai_route"]
        if not isinstance(route, str):
            answer: Any = openai_error("openai_route must be a string such as /v1/models")
        else:
            answer = await self.engine.openai(route, job_input.get("openai_input", {}))
        if isinstance(answer, dict):
            if "error" in answer:
                yield {"error": json.dumps(answer), "request_id": request_id}
            else:
                yield answer
            return
        async for event in answer:
            yield event

    async def _generate(self, job_input: Any, request_id: str) -> AsyncIterator[dict[str, Any]]:
        started = time.perf_counter()
        request = GenerateInput.model_validate(job_input)
        llm = self.engine
        dropped = 0
        if request.messages is not None:
            messages = [m.model_dump() for m in request.messages]
            if request.fit_context:
                wanted = request.max_tokens or self.settings.default_max_tokens
                messages, prompt_ids = _fitted(llm, messages, wanted)
                dropped = len(request.messages) - len(messages)
            else:
                prompt_ids = llm.chat_prompt(messages)
        else:
            prompt_ids = llm.text_prompt(request.prompt or "")
        params = _sampling(request, len(prompt_ids), llm, self.settings.default_max_tokens)
        text, completion_tokens, finish_reason, metrics = [], 0, None, None
        try:
            async for output in llm.generate(prompt_ids, params, request_id):
                completion = output.outputs[0]
                completion_tokens += len(completion.token_ids)
                finish_reason = completion.finish_reason or finish_reason
                metrics = output.metrics or metrics
                text.append(completion.text)
                if request.stream and completion.text:
                    yield {"delta": completion.text}
        except VLLMClientError as exc:  # the request's fault: e.g. a schema it cannot compile
            raise Refused(str(exc)) from exc
        total_ms = (time.perf_counter() - started) * 1000
        queue_ms = 0.0
        if metrics is not None and metrics.scheduled_ts and metrics.queued_ts:
            queue_ms = max(0.0, (metrics.scheduled_ts - metrics.queued_ts) * 1000)
        yield {
            "raw_text": "".join(text),
            "finish_reason": finish_reason,
            "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": completion_tokens},
            "messages_dropped": dropped,
            "model": llm.model_id,
            "timings": {
                "queue_ms": round(queue_ms, 3),
                "inference_ms": round(total_ms - queue_ms, 3),
                "total_ms": round(total_ms, 3),
            },
        }

    async def _embed(self, job_input: Any, request_id: str) -> dict[str, Any]:
        request = EmbedInput.model_validate(job_input)
        texts = [request.input] if isinstance(request.input, str) else request.input
        limit = self.settings.max_embed_batch
        if len(texts) > limit:
            raise TooLarge(f"input holds {len(texts)} texts; the limit is {limit}")
        llm = self.engine
        results = await asyncio.gather(
            *(
                llm.embed(text, request.normalize, f"{request_id}-{i}")
                for i, text in enumerate(texts)
            )
        )
        embeddings = [vector for vector, _ in results]
        return {
            "embeddings": embeddings,
            "dim": len(embeddings[0]),
            "model": llm.model_id,
            "usage": {"prompt_tokens": sum(tokens for _, tokens in results)},
        }


worker = LlmWorker(LlmSettings())
handle = worker.handle
