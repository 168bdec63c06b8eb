"""The deployed topology on one machine: the API with INFERENCE_BACKEND=runpod, the emulator,
and worker processes under the runpod SDK, with HMAC-signed embedding requests."""

import json

import httpx
import openai
import pytest

from tests.conftest import HMAC_SECRET, runpod_settings, start_api, usage_of
from tests.speech import spoken

CLIP = "openai/clip-vit-base-patch32"  # the API's CLIP_MODEL (the worker serves "tiny-clip")


@pytest.fixture(scope="module")
async def deployed(database_url, emulator):
    async for api in start_api(runpod_settings(database_url, emulator, signing_secret=HMAC_SECRET)):
        yield api


async def test_chat_through_runpod(deployed):
    response = await deployed.post("/v1/chat", json={"user_id": "e2e", "message": "over the wire"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == "tiny-llama"
    stored = (await deployed.get(f"/v1/conversations/{body['conversation_id']}")).json()
    assert stored["messages"][-1]["content"] == body["assistant_message"]


async def test_streamed_chat_through_runpod(deployed):
    response = await deployed.post(
        "/v1/chat",
        json={"user_id": "e2e", "message": "a b c d e f", "stream": True, "temperature": 0},
    )
    events = [block.split("\n") for block in response.text.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names[-1] == "done"
    assert set(names[:-1]) == {"delta"}
    assert len(names) >= 3
    deltas = [json.loads(lines[1].removeprefix("data: "))["delta"] for lines in events[:-1]]
    done = json.loads(events[-1][1].removeprefix("data: "))
    assert "".join(deltas) == done["assistant_message"]
    stored = (await deployed.get(f"/v1/conversations/{done['conversation_id']}")).json()
    assert stored["messages"][-1]["content"] == done["assistant_message"]


async def test_answer_longer_than_the_context_is_the_clients_to_fix(deployed):
    """The worker's refusal crosses the runpod SDK and RunPod's job API as a refusal."""
    response = await deployed.post(
        "/v1/chat", json={"user_id": "e2e", "message": "x", "max_tokens": 8000}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert "does not fit" in response.json()["error"]["message"]


async def test_signed_embedding_through_runpod(deployed):
    response = await deployed.post("/v1/embeddings", json={"model": CLIP, "input": "signed"})
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert (response.json()["model"], len(item["embedding"])) == ("tiny-clip", 512)


async def test_worker_rejects_a_wrong_signature(database_url, emulator):
    async for api in start_api(
        runpod_settings(database_url, emulator, signing_secret="wrong-secret")
    ):
        response = await api.post("/v1/embeddings", json={"model": CLIP, "input": "forged"})
        assert response.status_code == 502
        assert "Authentication failed" in response.json()["error"]["message"]


async def test_each_route_type_is_metered_as_runpod_timed_it(deployed):
    """A usage row per worker answer, with RunPod's delayTime and executionTime where the job
    API gives them, priced at the dev stack's GPUs (Pulumi.dev.yaml at the catalog snapshot's
    prices: the test environment's default)."""
    before = len(await usage_of(deployed))
    http = httpx.AsyncClient(transport=deployed.client._transport, timeout=60)
    client = openai.AsyncOpenAI(
        base_url="http://api/v1", api_key=deployed.key, http_client=http, max_retries=0
    )
    chat = {"user_id": "usage", "message": "metered", "max_tokens": 4}
    assert (await deployed.post("/v1/chat", json=chat)).status_code == 200
    stream = await client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "metered"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for _ in stream:
        pass
    text = {"model": "all-MiniLM-L6-v2", "input": ["one", "two"]}
    assert (await deployed.post("/v1/embeddings", json=text)).status_code == 200
    image_text = {"model": CLIP, "input": "metered"}
    assert (await deployed.post("/v1/embeddings", json=image_text)).status_code == 200
    audio = {"file": ("fox.wav", spoken(), "audio/wav")}
    heard = await deployed.post("/v1/audio/transcriptions", files=audio, data={"model": "w"})
    assert heard.status_code == 200, heard.text

    rows = {row.worker: row for row in (await usage_of(deployed, before + 5))[before:]}
    prices = deployed.app.state.prices
    assert set(rows) == {"llm", "embed", "clip", "transcribe"} and all(prices.values())
    llm, embed, clip, heard_row = rows["llm"], rows["embed"], rows["clip"], rows["transcribe"]
    # The llm's last row is the streamed OpenAI answer: its tokens from the usage chunk.
    assert (llm.route, llm.output_tokens, llm.endpoint) == ("/v1/chat/completions", 5, "llm")
    assert embed.items == 2 and embed.input_tokens > 0
    assert clip.items == 1 and clip.delay_ms is not None  # a job RunPod timed
    assert heard_row.audio_seconds > 2 and heard_row.delay_ms is not None
    for row in rows.values():
        assert row.cost_usd == pytest.approx(prices[row.worker] * row.execution_ms / 1000)
    [turn] = [r for r in await usage_of(deployed) if r.route == "/v1/chat"][-1:]
    assert turn.worker == "llm" and turn.output_tokens <= 4 and turn.delay_ms is not None
