"""The official `openai` client pointed at an endpoint's OpenAI passthrough
(`/v2/{endpoint}/openai/v1`), as RunPod's users do: the real workers in their own processes under
the runpod SDK's job loop, behind the emulator (conftest)."""

import json

import jsonschema
import openai
import pytest
from transformers import AutoTokenizer

from tests.gpu_worker.test_llm_openai import STAGE_SCHEMA, WEATHER_TOOL, no_whitespace

pytestmark = pytest.mark.vllm

MESSAGES = [{"role": "user", "content": "Hello"}]


def client(emulator, endpoint: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{emulator.base_url}/{endpoint}/openai/v1",
        api_key=emulator.api_key,
        max_retries=0,
        timeout=60,
    )


async def test_chat_completion_and_its_stream(emulator):
    llm = client(emulator, "llm")
    whole = await llm.chat.completions.create(
        model="tiny-llama",
        messages=MESSAGES,
        max_tokens=6,
        temperature=0,  # type: ignore[arg-type]
    )
    assert whole.choices[0].finish_reason == "length" and whole.usage is not None
    stream = await llm.chat.completions.create(
        model="tiny-llama",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        whole.choices[0].message.content
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


async def json_schema_answer_and_tool_call_round_trip(
    llm: openai.AsyncOpenAI, model: str, tokenizer
) -> None:
    """A JSON-schema answer that parses and validates, then a named tool's call (arguments
    valid in its schema) answered by the tool's result."""
    answer = await llm.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=40,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "journey", "schema": STAGE_SCHEMA},
        },
    )
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), STAGE_SCHEMA)
    asked = await llm.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=150,
        seed=1,
        logit_bias=no_whitespace(tokenizer),
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    [call] = asked.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"])  # type: ignore[union-attr]
    follow_up = await llm.chat.completions.create(
        model=model,
        messages=[
            *MESSAGES,
            asked.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'},
        ],  # type: ignore[list-item]
        max_tokens=3,
    )
    assert follow_up.choices[0].message.content is not None


async def test_json_schema_answer_and_tool_call_round_trip(emulator):
    tokenizer = AutoTokenizer.from_pretrained(emulator.models["llm"])
    await json_schema_answer_and_tool_call_round_trip(
        client(emulator, "llm"), "tiny-llama", tokenizer
    )


async def test_models_completions_and_embeddings(emulator):
    llm, embed = client(emulator, "llm"), client(emulator, "embed")
    assert [model.id async for model in llm.models.list()] == ["tiny-llama"]
    completion = await llm.completions.create(model="tiny-llama", prompt="Tandem", max_tokens=3)
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    vectors = await embed.embeddings.create(model="all-MiniLM-L6-v2", input=["Pulumi", "RunPod"])
    assert [len(item.embedding) for item in vectors.data] == [384, 384]


async def test_errors_arrive_as_the_clients_exceptions(emulator):
    llm = client(emulator, "llm")
    with pytest.raises(openai.NotFoundError, match="gpt-4o"):
        await llm.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="temprature"):
        await llm.chat.completions.create(
            model="tiny-llama",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_body={"temprature": 0.1},
        )
    stream = await llm.chat.completions.create(
        model="nope",
        messages=MESSAGES,
        stream=True,  # type: ignore[arg-type]
    )
    with pytest.raises(openai.APIError, match="nope"):  # the 200 was sent: the error is an event
        _ = [chunk async for chunk in stream]
