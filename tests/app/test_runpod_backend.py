"""The `runpod` backend against the emulator: queued, in-progress, failed, timed out,
cancelled and streamed jobs, each run by a real worker process under the runpod SDK."""

import asyncio
import json

import httpx
import pytest

from app.core.errors import WorkerFailed, WorkerTimeout, WorkerUnavailable
from app.inference.runpod import RunPodBackend, RunPodClient, _job_output
from gpu_worker.common.worker_types import WORKER_TYPES
from tests.conftest import free_port


def chat(text: str) -> dict:
    """A chat job; the controlled worker reads its last message as a command."""
    return {"messages": [{"role": "user", "content": text}]}


class RecordingTransport(httpx.AsyncBaseTransport):
    """Real HTTP, with every (method, path, status of the job) kept for assertions."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, str, str | None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        try:
            status = json.loads(response.content).get("status")
        except (ValueError, AttributeError):
            status = None
        self.calls.append((request.method, request.url.path, status))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def transport():
    return RecordingTransport()


@pytest.fixture
async def client(emulator, transport):
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=10, transport=transport)
    client.runsync_wait_ms = 1000  # the shortest wait RunPod allows, so polling kicks in
    yield client
    await client.aclose()


async def test_completed_job_returns_the_output(client):
    output = await client.run_sync("ctl", chat("hello"))
    assert output[-1]["raw_text"] == "echo: hello"


async def test_in_progress_job_is_polled_until_done(client, transport):
    output = await client.run_sync("ctl", chat("sleep: 2"))
    assert output[-1]["raw_text"] == "slept 2"
    calls = transport.calls
    assert calls[0][1:] == ("/v2/ctl/runsync", "IN_PROGRESS")
    assert any(path.startswith("/v2/ctl/status/") for _, path, _ in calls)
    assert calls[-1][2] == "COMPLETED"


async def test_queued_job_is_polled_until_done(client, transport):
    # MAX_CONCURRENCY=4 on the worker: four sleepers fill it, the fifth job waits in the queue.
    blockers = [asyncio.create_task(client.run_sync("ctl", chat("sleep: 2"))) for _ in range(4)]
    await asyncio.sleep(0.5)
    output = await client.run_sync("ctl", chat("queued"))
    assert output[-1]["raw_text"] == "echo: queued"
    statuses = [status for _, path, status in transport.calls if "ctl" in path]
    assert "IN_QUEUE" in statuses
    await asyncio.gather(*blockers)


async def test_failed_job_is_a_worker_error(client):
    with pytest.raises(WorkerFailed, match="worker error: out of memory"):
        await client.run_sync("ctl", chat("fail: out of memory"))


async def test_handler_exception_reports_only_its_message(client):
    with pytest.raises(WorkerFailed) as raised:
        await client.run_sync("ctl", chat("raise: kaput"))
    assert raised.value.message == "worker error: kaput"  # no traceback leaks


async def test_deadline_cancels_the_job(emulator):
    client = RunPodClient(emulator.base_url, emulator.api_key, timeout_s=1.5)
    with pytest.raises(WorkerTimeout):
        await client.run_sync("ctl", chat("sleep: 5"))
    async with httpx.AsyncClient(headers=emulator.headers) as http:
        health = (await http.get(f"{emulator.base_url}/ctl/health")).json()
    assert health["jobs"]["inProgress"] == 0
    await client.aclose()


async def test_cancelled_job_is_reported_as_cancelled(client):
    job_id = await client.run("ctl", chat("sleep: 5"))
    await client.cancel("ctl", job_id)
    status = await client.status("ctl", job_id)
    assert status["status"] == "CANCELLED"
    with pytest.raises(WorkerFailed, match="cancelled"):
        _job_output(status)


async def test_stream_yields_chunks_then_the_result(client):
    chunks = [chunk async for chunk in client.stream("ctl", chat("stream: 5"))]
    assert [c["delta"] for c in chunks[:-1]] == ["t0 ", "t1 ", "t2 ", "t3 ", "t4 "]
    assert chunks[-1]["raw_text"] == "streamed"


async def test_stream_abandoned_by_the_caller_cancels_the_job(client, transport):
    stream = client.stream("ctl", chat("stream: 100"))
    first = await anext(stream)
    assert first == {"delta": "t0 "}
    await stream.aclose()
    job_path = next(p for m, p, _ in transport.calls if p.startswith("/v2/ctl/stream/"))
    job_id = job_path.rsplit("/", 1)[-1]
    assert (await client.status("ctl", job_id))["status"] == "CANCELLED"


async def test_backend_on_the_real_workers(emulator):
    client = RunPodClient(emulator.base_url, emulator.api_key, 60)
    backend = RunPodBackend(client, {name: name for name in WORKER_TYPES})
    job = {"messages": [{"role": "user", "content": "two words"}], "temperature": 0}
    result = await backend.generate(job, "req-1")
    assert result["model"] == "tiny-llama"
    assert 1 <= result["usage"]["completion_tokens"] <= 16
    chunks = [c async for c in backend.generate_stream({**job, "stream": True}, "req-2")]
    assert "".join(c["delta"] for c in chunks[:-1]) == chunks[-1]["raw_text"] == result["raw_text"]
    texts = await backend.run("embed", {"input": ["a", "b"]}, "req-3")
    assert (texts["model"], texts["dim"], len(texts["embeddings"])) == ("all-MiniLM-L6-v2", 384, 2)
    with pytest.raises(WorkerFailed, match="Authentication failed"):
        await backend.run("clip", {"text": "unsigned"}, "req-4")
    await backend.aclose()


async def test_job_past_its_execution_timeout_is_a_timeout(client, emulator):
    async with httpx.AsyncClient(headers=emulator.headers) as http:
        answer = await http.post(
            f"{emulator.base_url}/ctl/run",
            json={"input": chat("sleep: 3"), "policy": {"executionTimeout": 500}},
        )
    submitted = answer.json()
    await asyncio.sleep(1)
    status = await client.status("ctl", submitted["id"])
    assert status["status"] == "TIMED_OUT"
    with pytest.raises(WorkerTimeout, match="execution timeout"):
        _job_output(status)


async def test_unreachable_runpod_is_unavailable():
    client = RunPodClient(f"http://127.0.0.1:{free_port()}/v2", "key", timeout_s=5)
    with pytest.raises(WorkerUnavailable, match="cannot reach RunPod"):
        await client.run_sync("llm", {"messages": []})
    await client.aclose()


async def test_wrong_api_key_is_a_clear_error(emulator):
    client = RunPodClient(emulator.base_url, "wrong-key", timeout_s=5)
    with pytest.raises(WorkerFailed, match="401"):
        await client.run_sync("llm", chat("x"))
    await client.aclose()


class ScriptedRunPod(httpx.AsyncBaseTransport):
    """RunPod's data plane answering from a script: for the retry policy, which needs 5xx
    answers on demand. Responses follow the shapes in shared/runpod/README.md."""

    def __init__(self, script: dict[str, list[tuple[int, dict]]]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "/status/" in path:
            path = path.rsplit("/", 1)[0]  # one script for every job id
        key = f"{request.method} {path}"
        self.calls.append(key)
        status, body = self.script[key].pop(0)
        return httpx.Response(status, json=body)


async def test_status_polls_are_retried_but_runsync_is_not(monkeypatch):
    monkeypatch.setattr("app.inference.runpod.random.uniform", lambda _low, _high: 0.0)
    transport = ScriptedRunPod(
        {
            "POST /v2/llm/runsync": [(200, {"id": "j1", "status": "IN_QUEUE"}), (503, {})],
            "GET /v2/llm/status": [
                (503, {}),
                (429, {}),
                (200, {"id": "j1", "status": "COMPLETED", "output": {"raw_text": "ok"}}),
            ],
        }
    )
    client = RunPodClient("https://api.runpod.ai/v2", "key", 30, transport=transport)
    assert await client.run_sync("llm", {}) == {"raw_text": "ok"}
    assert transport.calls.count("GET /v2/llm/status") == 3
    with pytest.raises(WorkerUnavailable, match="503"):
        await client.run_sync("llm", {})
    assert transport.calls.count("POST /v2/llm/runsync") == 2  # once each: never retried
