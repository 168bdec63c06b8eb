"""The LLM worker's handler on vLLM's real engine (CPU) with a tiny random Llama built here:
chat, prompts, streaming, limits, bad input, and many jobs at once."""

import asyncio

import pytest

import gpu_worker.llm.handler as llm
from gpu_worker.llm.tiny import build_tiny_llama
from tests.vllm_cpu import cpu_settings, running_llm_worker

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def tiny_llama_worker(tmp_path_factory):
    model = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    settings = cpu_settings(model, served_model_name="tiny-llama", max_model_len=256)
    with running_llm_worker(settings) as worker:
        yield worker


async def run(worker: llm.LlmWorker, job_input, job_id: str = "job-1") -> list[dict]:
    return [chunk async for chunk in worker.handle({"id": job_id, "input": job_input})]


def chat(text: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


async def test_chat_through_the_chat_template(tiny_llama_worker):
    [result] = await run(tiny_llama_worker, chat("Hello there", max_tokens=8, temperature=0))
    assert result["model"] == "tiny-llama"
    assert result["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] == 8
    template = tiny_llama_worker.engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello there"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    assert result["usage"]["prompt_tokens"] == len(template)
    assert set(result["timings"]) == {"queue_ms", "inference_ms", "total_ms"}
    assert result["timings"]["total_ms"] >= result["timings"]["inference_ms"] > 0


async def test_seeded_sampling_repeats(tiny_llama_worker):
    first = await run(tiny_llama_worker, chat("Pulumi", max_tokens=10, temperature=1.0, seed=7))
    second = await run(
        tiny_llama_worker, chat("Pulumi", max_tokens=10, temperature=1.0, seed=7), "job-2"
    )
    assert first[0]["raw_text"] == second[0]["raw_text"]


async def test_prompt_without_template(tiny_llama_worker):
    [result] = await run(
        tiny_llama_worker, {"prompt": "Tandem deploys", "max_tokens": 4, "temperature": 0}
    )
    assert result["usage"]["completion_tokens"] == 4


async def test_stream_deltas_add_up_to_the_answer(tiny_llama_worker):
    chunks = await run(
        tiny_llama_worker, chat("Hello", max_tokens=12, temperature=1.0, seed=3, stream=True)
    )
    *deltas, result = chunks
    assert len(deltas) >= 2
    assert "".join(d["delta"] for d in deltas) == result["raw_text"]
    whole = await run(
        tiny_llama_worker, chat("Hello", max_tokens=12, temperature=1.0, seed=3), "job-3"
    )
    assert whole[0]["raw_text"] == result["raw_text"]


async def test_sampling_parameters_take_effect(tiny_llama_worker):
    """top_k 1 and min_p 1 each leave only the likeliest token: greedy decoding at any
    temperature (a field that were dropped would sample instead)."""
    [greedy] = await run(tiny_llama_worker, chat("Pulumi", max_tokens=12, temperature=0))
    for field in ({"top_k": 1}, {"min_p": 1.0}):
        [narrowed] = await run(
            tiny_llama_worker, chat("Pulumi", max_tokens=12, temperature=2.0, seed=1, **field)
        )
        assert narrowed["raw_text"] == greedy["raw_text"], field
    [sampled] = await run(tiny_llama_worker, chat("Pulumi", max_tokens=12, temperature=2.0, seed=1))
    assert sampled["raw_text"] != greedy["raw_text"]


def test_default_max_tokens_is_not_vllms_16(tiny_llama_worker):
    request = llm.GenerateInput.model_validate(chat("Hello"))
    # DEFAULT_MAX_TOKENS (512), clamped to what the 256-token context leaves after the prompt.
    assert llm._sampling(request, 10, tiny_llama_worker.engine, 512).max_tokens == 246


@pytest.mark.parametrize(
    ("job_input", "words"),
    [
        ("text", "input must be an object"),
        ({}, "exactly one of messages or prompt"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user"}]}, "content"),
        ({"prompt": ""}, "prompt"),
        (chat("x", max_tokens=0), "max_tokens"),
        (chat("x", max_tokens=1000), "does not fit"),
        (chat("x", temperature=5), "temperature"),
        (chat("x", top_k=-2), "top_k"),
        (chat("x", n=2), "n: Extra inputs are not permitted (for OpenAI's other fields, send an"),
        (chat("x", temprature=0.1), "temprature: Extra inputs are not permitted"),
        (chat("word " * 400), "the model's context is 256"),
    ],
)
async def test_bad_input_is_an_error_and_the_worker_goes_on(tiny_llama_worker, job_input, words):
    [result] = await run(tiny_llama_worker, job_input, "bad-job")
    assert words in result["error"]
    assert result["request_id"] == "bad-job"
    [next_result] = await run(tiny_llama_worker, chat("still serving", max_tokens=2), "next-job")
    assert next_result["usage"]["completion_tokens"] == 2


async def test_many_jobs_at_once(tiny_llama_worker):
    jobs = [
        run(tiny_llama_worker, chat(f"question {i}", max_tokens=6), f"job-{i}") for i in range(16)
    ]
    results = await asyncio.gather(*jobs)
    assert all(r[0]["usage"]["completion_tokens"] == 6 for r in results)


def conversation(turns: int, words: int = 30) -> list[dict[str, str]]:
    """A system message, `turns` question/answer pairs of `words` words each, a new question."""
    messages = [{"role": "system", "content": "You are terse."}]
    for n in range(turns):
        messages.append({"role": "user", "content": f"question {n} " + "word " * words})
        messages.append({"role": "assistant", "content": f"answer {n} " + "word " * words})
    return [*messages, {"role": "user", "content": "and now?"}]


async def test_a_conversation_longer_than_the_context_keeps_its_newest_turns(tiny_llama_worker):
    messages = conversation(turns=12)
    engine = tiny_llama_worker.engine
    assert len(engine.chat_prompt(messages)) > 256  # over the model's context

    [refused] = await run(tiny_llama_worker, {"messages": messages, "max_tokens": 8})
    assert refused["error"].startswith("[input_too_large] the prompt is")

    [result] = await run(
        tiny_llama_worker, {"messages": messages, "max_tokens": 8, "fit_context": True}
    )
    assert result["usage"]["completion_tokens"] == 8
    dropped = result["messages_dropped"]
    assert dropped > 0 and dropped % 2 == 0  # whole turns, the oldest first
    prompt = engine.chat_prompt([messages[0], *messages[1 + dropped :]])
    assert result["usage"]["prompt_tokens"] == len(prompt)
    assert len(prompt) + 8 <= 256  # room for the answer
    longer = engine.chat_prompt([messages[0], *messages[1 + dropped - 2 :]])
    assert len(longer) + 8 > 256  # and no turn more was dropped than needed


async def test_a_conversation_that_fits_is_sent_whole(tiny_llama_worker):
    messages = conversation(turns=1, words=3)
    [result] = await run(
        tiny_llama_worker, {"messages": messages, "max_tokens": 4, "fit_context": True}
    )
    assert result["messages_dropped"] == 0


async def test_a_new_message_alone_over_the_context_is_too_large(tiny_llama_worker):
    messages = [{"role": "user", "content": "word " * 400}]
    [result] = await run(
        tiny_llama_worker, {"messages": messages, "max_tokens": 4, "fit_context": True}
    )
    assert result["error"].startswith("[input_too_large]")
