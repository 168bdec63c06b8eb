"""The real workers as RunPod runs them: `python -m gpu_worker.llm` and `python -m gpu_worker.clip`
in their own processes under the runpod SDK's job loop, behind the emulator."""

import asyncio
import base64
import io
import time

import httpx
import pytest
from PIL import Image

from app.inference.runpod import RunPodClient
from gpu_worker.clip.tiny import build_tiny_clip
from gpu_worker.common.signing import signed_auth
from gpu_worker.llm.tiny import build_tiny_llama
from tests.conftest import runpod_settings, start_api, start_emulator, stop_emulator
from tests.vllm_cpu import CPU_ENV

pytestmark = pytest.mark.vllm
SECRET = "e2e-secret"


@pytest.fixture(scope="module")
def llm_emulator(tmp_path_factory):
    model = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    env = {**CPU_ENV, "MODEL_NAME": str(model), "MAX_MODEL_LEN": "256", "MAX_CONCURRENCY": "4"}
    emulator = start_emulator({"llm": "gpu_worker.llm"}, env=env, timeout_s=180)
    yield emulator
    stop_emulator(emulator)


@pytest.fixture(scope="module")
def clip_emulator(tmp_path_factory):
    model = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
    env = {"MODEL_NAME": str(model), "EMBEDDING_HMAC_SECRET": SECRET}
    emulator = start_emulator({"clip": "gpu_worker.clip"}, env=env)
    yield emulator
    stop_emulator(emulator)


def chat(text: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


async def test_runsync_chat(llm_emulator):
    client = RunPodClient(llm_emulator.base_url, llm_emulator.api_key, timeout_s=60)
    output = await client.run_sync("llm", chat("Hello", max_tokens=5))
    assert output[-1]["usage"]["completion_tokens"] == 5
    await client.aclose()


async def test_run_then_status(llm_emulator):
    client = RunPodClient(llm_emulator.base_url, llm_emulator.api_key, timeout_s=60)
    job_id = await client.run("llm", chat("Hi", max_tokens=3))
    deadline = time.monotonic() + 30
    while (status := await client.status("llm", job_id))["status"] != "COMPLETED":
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)
    assert status["output"][-1]["usage"]["completion_tokens"] == 3
    await client.aclose()


async def test_stream_arrives_in_pieces(llm_emulator):
    client = RunPodClient(llm_emulator.base_url, llm_emulator.api_key, timeout_s=60)
    job = chat("Stream", max_tokens=20, temperature=1.0, seed=5, stream=True)
    chunks = [chunk async for chunk in client.stream("llm", job)]
    *deltas, result = chunks
    assert len(deltas) >= 2
    assert "".join(d["delta"] for d in deltas) == result["raw_text"]
    await client.aclose()


async def test_bad_input_fails_the_job_and_the_worker_goes_on(llm_emulator):
    client = RunPodClient(llm_emulator.base_url, llm_emulator.api_key, timeout_s=60)
    with pytest.raises(Exception, match="role"):
        await client.run_sync("llm", {"messages": [{"role": "robot", "content": "x"}]})
    output = await client.run_sync("llm", chat("next", max_tokens=2))
    assert output[-1]["usage"]["completion_tokens"] == 2
    await client.aclose()


async def test_max_concurrency_jobs_run_at_once(llm_emulator):
    client = RunPodClient(llm_emulator.base_url, llm_emulator.api_key, timeout_s=120)
    jobs = asyncio.gather(
        *(client.run_sync("llm", chat(f"q{i}", max_tokens=200)) for i in range(8))
    )
    most_in_progress = 0
    async with httpx.AsyncClient(headers=llm_emulator.headers) as http:
        while not jobs.done():
            health = (await http.get(f"{llm_emulator.base_url}/llm/health")).json()
            most_in_progress = max(most_in_progress, health["jobs"]["inProgress"])
            await asyncio.sleep(0.02)
    outputs = await jobs
    assert all(o[-1]["finish_reason"] in ("length", "stop") for o in outputs)
    assert most_in_progress == 4  # MAX_CONCURRENCY: one worker, four jobs at a time
    await client.aclose()


async def test_cancel_a_running_stream(llm_emulator):
    client = RunPodClient(llm_emulator.base_url, llm_emulator.api_key, timeout_s=60)
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


async def test_clip_worker_signed_requests(clip_emulator):
    client = RunPodClient(clip_emulator.base_url, clip_emulator.api_key, timeout_s=30)
    job = {"text": "a photo of a cat", "auth": signed_auth(SECRET, "a photo of a cat")}
    output = await client.run_sync("clip", job)
    assert output["dim"] == len(output["embedding"]) == 16
    data = png_base64()
    images = await client.run_sync(
        "clip", {"images": [data, data], "auth": signed_auth(SECRET, f"{data}\n{data}")}
    )
    assert len(images["embeddings"]) == 2
    with pytest.raises(Exception, match="Authentication failed"):
        await client.run_sync("clip", {"text": "unsigned"})
    await client.aclose()


async def test_api_chats_through_the_vllm_worker(database_url, llm_emulator):
    async for api in start_api(
        runpod_settings(database_url, llm_emulator, runpod_timeout_seconds=60)
    ):
        response = await api.post(
            "/v1/chat", json={"user_id": "e2e", "message": "Hello", "max_tokens": 5}
        )
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 5
        streamed = await api.post(
            "/v1/chat",
            json={"user_id": "e2e", "message": "Hi", "max_tokens": 8, "stream": True},
        )
        assert streamed.text.count("event: delta") >= 1
        assert "event: done" in streamed.text
        too_long = await api.post(
            "/v1/chat", json={"user_id": "e2e", "message": "x", "max_tokens": 8000}
        )
        assert too_long.status_code == 502
        assert "does not fit" in too_long.json()["error"]["message"]


async def test_api_embeds_through_the_clip_worker(database_url, clip_emulator):
    async for api in start_api(
        runpod_settings(database_url, clip_emulator, embedding_hmac_secret=SECRET)
    ):
        response = await api.post("/v1/embeddings", json={"text": "a red car"})
        assert response.status_code == 200, response.text
        assert response.json()["dim"] == 16
