"""The command line of the benchmarks that run the LLM worker: `--rounds`, and `--model` (a
model directory; default: a tiny Llama built for the run)."""

import argparse
import asyncio
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any


def main(
    description: str, run: Callable[[Path, int], Coroutine[Any, Any, None]], rounds: int = 6
) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--model", type=Path, help="a model directory (default: a tiny Llama)")
    args = parser.parse_args()
    if args.model:
        asyncio.run(run(args.model, args.rounds))
        return
    from gpu_worker.llm.tiny import build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(build_tiny_llama(Path(tmp)), args.rounds))
