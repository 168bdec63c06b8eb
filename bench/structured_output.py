"""What JSON-schema output costs on the CPU: the same prompts answered as free text and
constrained to a JSON schema (xgrammar, compact JSON), 16 concurrent native jobs through the
LLM worker, side by side in one run with the order alternated. Tokens/s unstreamed (every
answer runs to the same length) and time to the first token, as the time of a one-token answer
(a random model's first tokens may decode to no text, so the first streamed text would measure
the model, not the grammar; the schema is compiled, or found in the cache, before it).

    .venv/bin/python bench/structured_output.py [--rounds 6] [--model DIR]
"""

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault(
    "STRUCTURED_OUTPUTS_CONFIG",
    json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
)

CONCURRENCY = 16
MAX_TOKENS = 64
SCHEMA = {  # the README's journey assistant's answer
    "type": "object",
    "properties": {
        "stage_probs": {"type": "object", "additionalProperties": {"type": "number"}},
        "confidence": {"type": "number"},
        "coverage": {"type": "number"},
        # Long enough that every answer runs to MAX_TOKENS, as free text does: equal work.
        "signals": {"type": "array", "items": {"type": "string", "minLength": 400}},
    },
    "required": ["signals", "stage_probs", "confidence", "coverage"],
}
FORMATS = {
    "free text": {},
    "JSON schema": {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
}


def job(i: int, fields: dict, max_tokens: int) -> dict:
    question = f"Question {i}: where is this customer in their journey?"
    return {
        "id": f"j{i}",
        "input": {
            "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        | fields,
    }


async def one_round(worker, fields: dict, max_tokens: int) -> tuple[float, float]:
    """Tokens/s of CONCURRENCY jobs at once, and their median time to their answers."""
    started = time.perf_counter()
    times: list[float] = []
    tokens = 0

    async def one(i: int) -> None:
        nonlocal tokens
        async for item in worker.handle(job(i, fields, max_tokens)):
            assert "error" not in item, item
            tokens += item["usage"]["completion_tokens"]
        times.append(time.perf_counter() - started)

    await asyncio.gather(*(one(i) for i in range(CONCURRENCY)))
    assert tokens == CONCURRENCY * max_tokens, f"answers ended early: {tokens} tokens"
    return tokens / (time.perf_counter() - started), statistics.median(times)


async def run(model: Path, rounds: int) -> None:
    from tests.vllm_cpu import cpu_settings, running_llm_worker

    settings = cpu_settings(model, max_model_len=256, max_concurrency=CONCURRENCY)
    with running_llm_worker(settings) as worker:
        for fields in FORMATS.values():  # warm-up: the schema compiled once
            await one_round(worker, fields, MAX_TOKENS)
        rate: dict[str, list[float]] = {name: [] for name in FORMATS}
        ttft: dict[str, list[float]] = {name: [] for name in FORMATS}
        for r in range(rounds):
            for name in list(FORMATS)[:: 1 if r % 2 == 0 else -1]:
                rate[name].append((await one_round(worker, FORMATS[name], MAX_TOKENS))[0])
                ttft[name].append((await one_round(worker, FORMATS[name], 1))[1])
    median_rate = {name: statistics.median(values) for name, values in rate.items()}
    median_ttft = {name: statistics.median(values) * 1000 for name, values in ttft.items()}
    for name in FORMATS:
        print(f"{name:<12} {median_rate[name]:8.1f} tokens/s   TTFT {median_ttft[name]:7.1f} ms")
    print(
        f"JSON schema vs free text: {median_rate['JSON schema'] / median_rate['free text']:.3f}x "
        f"tokens/s, {median_ttft['JSON schema'] / median_ttft['free text']:.3f}x TTFT"
    )


if __name__ == "__main__":
    from bench._tiny_llama import main

    main(__doc__.splitlines()[0], run)
