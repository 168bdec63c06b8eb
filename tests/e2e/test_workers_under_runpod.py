"""The real workers as RunPod runs them: `python -m gpu_worker.llm` and `python -m gpu_worker.clip`
in their own processes under the runpod SDK's job loop, behind the emulator (conftest)."""

import asyncio
import base64
import io
import time

import httpx
import psutil
import pytest
from PIL import Image

from app.core.errors import WorkerFailed
from app.inference.runpod import RunPodClient
from gpu_worker.common.signing import signed
from gpu_worker.llm.tiny import build_tiny_llama
from tests.conftest import WORKER_ENV, WORKERS_KEY, start_emulator, stop_emulator

pytestmark = pytest.mark.vllm


def chat(text: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


async def test_runsync_chat(emulator):
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=60)
    output = await client.run_sync("llm", chat("Hello", max_tokens=5))
    assert output[-1]["usage"]["completion_tokens"] == 5
    await client.aclose()


async def test_run_then_status(emulator):
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=60)
    job_id = await client.run("llm", chat("Hi", max_tokens=3))
    deadline = time.monotonic() + 30
    while (status := await client.status("llm", job_id))["status"] != "COMPLETED":
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)
    assert status["output"][-1]["usage"]["completion_tokens"] == 3
    await client.aclose()


async def test_stream_arrives_in_pieces(emulator):
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=60)
    job = chat("Stream", max_tokens=20, temperature=1.0, seed=5, stream=True)
    chunks = [chunk async for chunk in client.stream("llm", job)]
    *deltas, result = chunks
    assert len(deltas) >= 2
    assert "".join(d["delta"] for d in deltas) == result["raw_text"]
    await client.aclose()


async def test_bad_input_fails_the_job_and_the_worker_goes_on(emulator):
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=60)
    with pytest.raises(Exception, match="role"):
        await client.run_sync("llm", {"messages": [{"role": "robot", "content": "x"}]})
    output = await client.run_sync("llm", chat("next", max_tokens=2))
    assert output[-1]["usage"]["completion_tokens"] == 2
    await client.aclose()


async def test_a_worker_asking_for_a_refresh_is_replaced(emulator):
    """As the llm worker asks when its engine died: the job fails, the runpod SDK reports it with
    `stopPod` and ends the worker, and a fresh one takes the next job."""
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=60)
    before = (await client.run_sync("ctl", {"command": "pid:"}))[-1]["raw_text"]
    with pytest.raises(WorkerFailed, match="engine gone"):
        await client.run_sync("ctl", {"command": "die: engine gone"})
    after = (await client.run_sync("ctl", {"command": "pid:"}))[-1]["raw_text"]
    assert after != before
    await client.aclose()


async def test_a_dead_engine_gets_a_fresh_worker(tmp_path):
    """The llm worker whose vLLM engine died (its engine process killed, as an out-of-memory
    kill would) fails the job, ends, and RunPod's replacement serves the next one."""
    model = build_tiny_llama(tmp_path / "tiny-llama")
    emulator = start_emulator(
        {"llm": "gpu_worker.llm"}, WORKER_ENV, {"llm": {"MODEL_NAME": str(model)}}, 240
    )
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=180)
    try:
        await client.run_sync("llm", chat("Hi", max_tokens=2))
        workers = psutil.Process(emulator.process.pid).children(recursive=True)
        [engine] = [p for p in workers if p.name() == "VLLM::EngineCore"]
        worker = engine.parent()
        engine.kill()
        with pytest.raises(WorkerFailed, match="the inference engine failed"):
            await client.run_sync("llm", chat("Hi", max_tokens=2))
        worker.wait(60)  # the runpod SDK ended it
        output = await client.run_sync("llm", chat("Hi again", max_tokens=2))
        assert output[-1]["usage"]["completion_tokens"] == 2
    finally:
        await client.aclose()
        stop_emulator(emulator)


async def test_max_concurrency_jobs_run_at_once(emulator):
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=120)
    jobs = asyncio.gather(
        *(client.run_sync("llm", chat(f"q{i}", max_tokens=200)) for i in range(8))
    )
    most_in_progress = 0
    async with httpx.AsyncClient(headers=emulator.headers) as http:
        while not jobs.done():
            health = (await http.get(f"{emulator.base_url}/llm/health")).json()
            most_in_progress = max(most_in_progress, health["jobs"]["inProgress"])
            await asyncio.sleep(0.02)
    outputs = await jobs
    assert all(o[-1]["finish_reason"] in ("length", "stop") for o in outputs)
    assert most_in_progress == 4  # MAX_CONCURRENCY: one worker, four jobs at a time
    await client.aclose()


async def test_cancel_a_running_stream(emulator):
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=60)
    stream = client.stream("llm", chat("long", max_tokens=230, temperature=1.0, stream=True))
    await anext(stream)
    await stream.aclose()  # the client leaves: the job is cancelled on the worker
    output = await client.run_sync("llm", chat("after", max_tokens=2))
    assert output[-1]["usage"]["completion_tokens"] == 2
    await client.aclose()


def png_base64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), (10, 200, 10)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def test_clip_worker_signed_requests(emulator):
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=30)
    output = await client.run_sync("clip", signed(WORKERS_KEY, {"text": "a photo of a cat"}))
    assert output["dim"] == len(output["embedding"]) == 512
    data = png_base64()
    images = await client.run_sync("clip", signed(WORKERS_KEY, {"images": [data, data]}))
    assert len(images["embeddings"]) == 2
    with pytest.raises(Exception, match="Authentication failed"):
        await client.run_sync("clip", {"text": "unsigned"})
    await client.aclose()
