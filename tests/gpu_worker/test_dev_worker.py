"""The development worker's handler, called directly: answers, streams, and bad input."""

import pytest

from gpu_worker.dev.handler import EMBEDDING_DIM, handle


async def run(job_input) -> list[dict]:
    return [chunk async for chunk in handle({"id": "job-1", "input": job_input})]


async def test_chat_answer_and_usage():
    [result] = await run({"messages": [{"role": "user", "content": "hi there"}]})
    assert result["raw_text"] == "echo: hi there"
    assert result["finish_reason"] == "stop"
    assert result["usage"] == {"prompt_tokens": 2, "completion_tokens": 3}
    assert set(result["timings"]) == {"queue_ms", "inference_ms", "total_ms"}


async def test_stream_yields_deltas_then_the_result():
    chunks = await run({"messages": [{"role": "user", "content": "a b"}], "stream": True})
    assert [c["delta"] for c in chunks[:-1]] == ["echo: ", "a ", "b"]
    assert chunks[-1]["raw_text"] == "echo: a b"


async def test_max_tokens_cuts_the_answer():
    [result] = await run({"messages": [{"role": "user", "content": "a b c"}], "max_tokens": 2})
    assert (result["raw_text"], result["finish_reason"]) == ("echo: a", "length")


@pytest.mark.parametrize(
    ("job_input", "words"),
    [
        ("not an object", "input must be an object"),
        ({}, "messages must be a non-empty list"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": ["hi"]}, "messages[0] must be an object"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"text": ""}, "non-empty string"),
    ],
)
async def test_bad_input_is_an_error_with_the_request_id(job_input, words):
    [result] = await run(job_input)
    assert words in result["error"]
    assert result["request_id"] == "job-1"


async def test_embedding_shape():
    [result] = await run({"text": "hello", "normalize": True, "request_id": "r-9"})
    assert result["dim"] == len(result["embedding"]) == EMBEDDING_DIM
    assert result["request_id"] == "r-9"
