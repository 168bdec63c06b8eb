"""The LLM worker's OpenAI routes (RunPod's `openai_route` jobs) on vLLM's real engine and
OpenAI serving (CPU, a tiny random Llama): answers are checked against the official `openai`
package's types, errors against OpenAI's error shape."""

import json

import jsonschema
import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import gpu_worker.llm.handler as llm
from gpu_worker.llm.tiny import build_tiny_llama
from tests.conftest import OPENAI_TOOLING_ENV
from tests.vllm_cpu import cpu_settings, running_llm_worker

pytestmark = pytest.mark.vllm

MODEL = "tiny-llama"
# Finite answers: no free whitespace between JSON tokens, values from small sets.
STAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "stage": {"enum": ["aware", "consider", "decide"]},
        "confident": {"type": "boolean"},
    },
    "required": ["stage", "confident"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    model = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    settings = cpu_settings(model, served_model_name=MODEL, max_model_len=256)
    with pytest.MonkeyPatch.context() as env:  # vLLM arguments from the environment
        for name, value in OPENAI_TOOLING_ENV.items():
            env.setenv(name, value)
        with running_llm_worker(settings) as worker:
            yield worker


async def openai(worker: llm.LlmWorker, route: str, body: dict | None = None) -> list:
    job = {"id": "job-1", "input": {"openai_route": route, "openai_input": body or {}}}
    return [item async for item in worker.handle(job)]


def chat(text: str, **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def no_whitespace(tokenizer) -> dict[str, int]:
    """A logit bias banning the tokens that are only whitespace: the grammar of a tool call's
    tags lets a random model pad it with whitespace until `max_tokens` runs out."""
    vocab = tokenizer.get_vocab().items()
    return {str(i): -100 for t, i in vocab if tokenizer.convert_tokens_to_string([t]).isspace()}


def error_of(items: list) -> dict:
    [item] = items
    assert item["request_id"] == "job-1"
    body = json.loads(item["error"])
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


async def test_chat_completion_with_the_full_sampling_surface(worker):
    body = chat(
        "Hello",
        max_tokens=6,
        n=2,
        temperature=0.9,
        top_p=0.9,
        top_k=20,
        min_p=0.05,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        repetition_penalty=1.1,
        logprobs=True,
        top_logprobs=2,
        seed=11,
    )
    [answer] = await openai(worker, "/v1/chat/completions", body)
    completion = ChatCompletion.model_validate(answer)
    assert completion.model == MODEL
    assert [choice.index for choice in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert choice.finish_reason == "length"
        assert choice.logprobs is not None and len(choice.logprobs.content or []) == 6
        assert all(len(token.top_logprobs) == 2 for token in choice.logprobs.content or [])
    assert completion.usage is not None and completion.usage.completion_tokens == 12
    [again] = await openai(worker, "/v1/chat/completions", body)  # seeded: the same answer
    assert [c["message"] for c in again["choices"]] == [c["message"] for c in answer["choices"]]


async def test_streamed_chat_completion_ends_with_usage_and_done(worker):
    body = chat("Hello", max_tokens=5, temperature=0)
    streamed = body | {"stream": True, "stream_options": {"include_usage": True}}
    events = "".join(await openai(worker, "/v1/chat/completions", streamed)).split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [
        ChatCompletionChunk.model_validate_json(e.removeprefix("data: ")) for e in events[:-2]
    ]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 5
    [whole] = await openai(worker, "/v1/chat/completions", body)  # greedy: the same text
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole["choices"][0]["message"]["content"]


async def test_json_schema_answers_parse_and_validate(worker):
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "journey", "schema": STAGE_SCHEMA, "strict": True},
    }
    for seed in range(3):
        body = chat("Where is the user?", max_tokens=40, seed=seed, response_format=response_format)
        [answer] = await openai(worker, "/v1/chat/completions", body)
        choice = ChatCompletion.model_validate(answer).choices[0]
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content or ""), STAGE_SCHEMA)


async def test_a_tool_call_round_trip(worker):
    asked = chat(
        "Weather in Paris?",
        max_tokens=150,
        seed=1,
        logit_bias=no_whitespace(worker.engine.tokenizer),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    [answer] = await openai(worker, "/v1/chat/completions", asked)
    message = ChatCompletion.model_validate(answer).choices[0].message
    [call] = message.tool_calls or []
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])
    result = {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'}
    follow_up = asked | {
        "messages": [*asked["messages"], message.model_dump(exclude_none=True), result],
        "tool_choice": "none",
        "max_tokens": 4,
    }
    [final] = await openai(worker, "/v1/chat/completions", follow_up)
    assert ChatCompletion.model_validate(final).choices[0].message.tool_calls in (None, [])


async def test_completions_and_models(worker):
    [answer] = await openai(
        worker, "/v1/completions", {"model": MODEL, "prompt": "Tandem", "max_tokens": 3}
    )
    assert Completion.model_validate(answer).usage.completion_tokens == 3  # type: ignore[union-attr]
    [models] = await openai(worker, "/v1/models")
    assert [Model.model_validate(m).id for m in models["data"]] == [MODEL]


@pytest.mark.parametrize(
    ("route", "body", "code", "param", "says"),
    [
        ("/v1/chat/completions", chat("Hi", temprature=0.2), 400, "temprature", "unknown field"),
        ("/v1/chat/completions", chat("Hi", temperature="hot"), 400, "temperature", "number"),
        ("/v1/chat/completions", chat("Hi") | {"model": "gpt-4o"}, 404, "model", "gpt-4o"),
        ("/v1/chat/completions", {"model": MODEL}, 400, "messages", "required"),
        ("/v1/completions", {}, 400, "prompt", "prompt"),  # vLLM's own error, not pydantic's
        ("/v1/embeddings", {"model": MODEL, "input": "hi"}, 404, None, "does not serve"),
        ("/v1/images", {}, 404, None, "unknown openai_route"),
    ],
)
async def test_bad_requests_get_openai_errors(worker, route, body, code, param, says):
    error = error_of(await openai(worker, route, body))
    assert error["code"] == code and error["param"] == param
    assert says in error["message"]


async def test_a_schema_the_grammar_cannot_compile_fails_that_job_only(worker):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    error = error_of(await openai(worker, "/v1/chat/completions", chat("Hi", response_format=bad)))
    assert error["code"] == 400
    [answer] = await openai(worker, "/v1/chat/completions", chat("Hi", max_tokens=2))
    assert ChatCompletion.model_validate(answer).choices[0].finish_reason == "length"
