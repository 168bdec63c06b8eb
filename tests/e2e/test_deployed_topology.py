"""The deployed topology on one machine: the API with INFERENCE_BACKEND=runpod, the emulator,
and worker processes under the runpod SDK, with HMAC-signed embedding requests."""

import json

import pytest

from tests.conftest import HMAC_SECRET, runpod_settings, start_api

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
