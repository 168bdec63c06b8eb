"""What the LLM worker costs over vLLM's engine, side by side in one run: 16 concurrent chat
jobs straight to the engine, as native jobs through `handle`, and as OpenAI jobs (RunPod's
`openai_route`, vLLM's OpenAI serving) through `handle`; same tiny model, same prompts, same
fixed length. Rounds alternate the order. Tokens/s unstreamed, time to first token streamed:
medians over 30 rounds, as a TTFT of ~15 ms on a 2-core CPU moves by a few ms between rounds.

    .venv/bin/python bench/llm_worker.py [--rounds 30] [--model DIR]
"""

import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

CONCURRENCY = 16
MAX_TOKENS = 64


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question {i}: how do I deploy Tandem?"}]


def engine_path(worker) -> Callable[[int, bool], AsyncIterator[object]]:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    engine, ids = worker.engine, iter(range(10**9))

    def run(i: int, stream: bool) -> AsyncIterator[object]:
        kind = RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY
        params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0, output_kind=kind)
        return engine.generate(engine.chat_prompt(messages(i)), params, f"e{next(ids)}")

    return run


def native_path(worker) -> Callable[[int, bool], AsyncIterator[object]]:
    def run(i: int, stream: bool) -> AsyncIterator[object]:
        job_input = {"messages": messages(i), "max_tokens": MAX_TOKENS, "temperature": 0}
        return worker.handle({"id": f"n{i}", "input": job_input | {"stream": stream}})

    return run


def openai_path(worker) -> Callable[[int, bool], AsyncIterator[object]]:
    def run(i: int, stream: bool) -> AsyncIterator[object]:
        body = {"model": worker.engine.model_id, "messages": messages(i), "stream": stream}
        body |= {"max_tokens": MAX_TOKENS, "temperature": 0}
        job_input = {"openai_route": "/v1/chat/completions", "openai_input": body}
        return worker.handle({"id": f"o{i}", "input": job_input})

    return run


async def one_round(path, stream: bool) -> tuple[float, float]:
    """Seconds for CONCURRENCY jobs at once, and their median time to the first item."""
    started = time.perf_counter()
    first: dict[int, float] = {}

    async def one(i: int) -> None:
        async for item in path(i, stream):
            first.setdefault(i, time.perf_counter() - started)
            assert not (isinstance(item, dict) and "error" in item), item

    await asyncio.gather(*(one(i) for i in range(CONCURRENCY)))
    return time.perf_counter() - started, statistics.median(first.values())


async def run(model: Path, rounds: int) -> None:
    from tests.vllm_cpu import cpu_settings, running_llm_worker

    settings = cpu_settings(model, max_model_len=256, max_concurrency=CONCURRENCY)
    with running_llm_worker(settings) as worker:
        paths = {
            "engine": engine_path(worker),
            "native": native_path(worker),
            "openai": openai_path(worker),
        }
        for path in paths.values():  # warm-up, OpenAI serving built
            await one_round(path, stream=False)
            await one_round(path, stream=True)
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        ttft: dict[str, list[float]] = {name: [] for name in paths}
        order = list(paths)
        for r in range(rounds):
            for name in order[r % 3 :] + order[: r % 3]:  # each goes first in turn
                seconds[name].append((await one_round(paths[name], stream=False))[0])
                ttft[name].append((await one_round(paths[name], stream=True))[1])
    tokens = CONCURRENCY * MAX_TOKENS
    rate = {name: tokens / statistics.median(s) for name, s in seconds.items()}
    first = {name: statistics.median(t) * 1000 for name, t in ttft.items()}
    for name in paths:
        print(f"{name:<7} {rate[name]:8.1f} tokens/s unstreamed   TTFT {first[name]:7.1f} ms")
    print(
        f"OpenAI jobs vs native: {rate['openai'] / rate['native']:.3f}x tokens/s (target >= "
        f"0.95), {first['openai'] / first['native']:.3f}x TTFT (target <= 1.20 on the CPU, 1.10 "
        f"on a GPU); native vs "
        f"engine: {rate['native'] / rate['engine']:.3f}x tokens/s, "
        f"{first['native'] / first['engine']:.3f}x TTFT"
    )


if __name__ == "__main__":
    from bench._tiny_llama import main

    main(__doc__.splitlines()[0], run, rounds=30)
