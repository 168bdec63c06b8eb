"""What the LLM worker's handler adds on top of vLLM: 16 concurrent chat jobs through `handle`
versus the same prompts sent straight to the engine, alternating in one run, same tiny model,
same sampling (fixed length, so both do the same work).

    .venv/bin/python bench/llm_handler_overhead.py [--rounds 5] [--model DIR]
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

CONCURRENCY = 16
MAX_TOKENS = 64


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question {i}: how do I deploy Tandem?"}]


async def through_handler(worker, round_id: int) -> float:
    async def one(i: int) -> None:
        job = {
            "id": f"h{round_id}-{i}",
            "input": {"messages": messages(i), "max_tokens": MAX_TOKENS, "temperature": 0},
        }
        async for chunk in worker.handle(job):
            assert "error" not in chunk, chunk

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(CONCURRENCY)))
    return time.perf_counter() - started


async def straight_to_engine(worker, round_id: int) -> float:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    engine = worker.engine

    async def one(i: int) -> None:
        params = SamplingParams(
            max_tokens=MAX_TOKENS, temperature=0, output_kind=RequestOutputKind.FINAL_ONLY
        )
        prompt = engine.chat_prompt(messages(i))
        async for _ in engine.generate(prompt, params, f"e{round_id}-{i}"):
            pass

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(CONCURRENCY)))
    return time.perf_counter() - started


async def run(model: Path, rounds: int) -> None:
    from tests.vllm_cpu import cpu_settings, running_llm_worker

    settings = cpu_settings(model, max_model_len=256, max_concurrency=CONCURRENCY)
    with running_llm_worker(settings) as worker:
        h, d = await compare(worker, rounds)
    print(f"{CONCURRENCY} jobs straight to the engine   median {d * 1000:8.1f} ms")
    print(f"{CONCURRENCY} jobs through handle()         median {h * 1000:8.1f} ms")
    print(f"handler overhead: {(h / d - 1) * 100:+.1f}% (target < 5%)")


async def compare(worker, rounds: int) -> tuple[float, float]:
    """Median seconds for one round of jobs: through the handler, and straight to the engine."""
    await through_handler(worker, -1)  # warm-up
    handler, direct = [], []
    for r in range(rounds):  # alternate which goes first, so neither gets the warmer engine
        if r % 2:
            handler.append(await through_handler(worker, r))
            direct.append(await straight_to_engine(worker, r))
        else:
            direct.append(await straight_to_engine(worker, r))
            handler.append(await through_handler(worker, r))
    return statistics.median(handler), statistics.median(direct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--model", type=Path, help="a model directory (default: a tiny Llama)")
    args = parser.parse_args()
    if args.model:
        asyncio.run(run(args.model, args.rounds))
        return
    from gpu_worker.llm.tiny import build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(build_tiny_llama(Path(tmp)), args.rounds))


if __name__ == "__main__":
    main()
