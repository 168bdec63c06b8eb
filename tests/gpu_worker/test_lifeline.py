"""vLLM's engine processes die with the process that started them, even by SIGKILL; and, as
local mode routes them, their logs reach stdout only as JSON lines."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from app.inference.local_models import CPU_ENV
from gpu_worker.llm.tiny import build_tiny_llama

# Starts an LLM worker's engine on a tiny model, says so, and waits to be killed.
HOLDER = """
import sys, time
from pathlib import Path
from app.core.logging import log_vllm_as_json
from gpu_worker.llm.handler import LlmWorker
from tests.vllm_cpu import cpu_settings

if __name__ == "__main__":
    log_vllm_as_json(Path(sys.argv[2]))
    worker = LlmWorker(cpu_settings(sys.argv[1], max_model_len=128))
    worker.load()
    print("loaded", flush=True)
    time.sleep(600)
"""


def _gone_within(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still running after `seconds` (zombies count as gone)."""
    deadline = time.monotonic() + seconds
    alive = processes
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return alive


@pytest.mark.vllm
def test_the_engine_processes_die_when_their_owner_is_killed(tmp_path):
    model = build_tiny_llama(tmp_path / "model")
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = os.environ | CPU_ENV | {"PYTHONPATH": os.getcwd()}
    holder = subprocess.Popen(
        [sys.executable, str(script), str(model), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None
        for line in holder.stdout:
            if line.strip() == "loaded":
                break
            if line.strip():  # a blank line (seen once from the engine's start) carries nothing
                json.loads(line)  # vLLM's output while its engine starts: JSON lines only
        else:
            raise AssertionError("the engine did not start")
        engine = psutil.Process(holder.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in engine]
        assert any("EngineCore" in command for command in commands), commands
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert _gone_within(engine, 20) == []
    finally:
        holder.kill()
        holder.wait()
