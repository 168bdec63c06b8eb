"""Chat grounded in documents (`rag`): the chunks found reach the model's prompt, come back
as `sources` and are stored with the answer."""

import pytest

from tests.app.corpus import PASSAGES

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
async def documents(api) -> dict[str, str]:
    ids = {}
    for source_id in ("tides", "tea", "chess"):
        body = {"source_id": source_id, "title": source_id, "text": PASSAGES[source_id]}
        ids[source_id] = (await api.post("/v1/documents", json=body)).json()["id"]
    return ids


QUESTION = "What makes the sea rise and fall every day?"


async def chat(api, **body) -> dict:
    response = await api.post("/v1/chat", json={"user_id": "u", "message": QUESTION, **body})
    assert response.status_code == 200, response.text
    return response.json()


async def test_sources_are_returned_stored_and_given_to_the_model(api, documents):
    plain = await chat(api, max_tokens=1, temperature=0)
    grounded = await chat(api, max_tokens=1, temperature=0, rag={"k": 2})
    assert plain["sources"] is None
    [best, second] = grounded["sources"]
    assert best["document_id"] == documents["tides"] and best["chunk"] == PASSAGES["tides"]
    assert best["score"] > second["score"]
    # The two passages and the instruction made the prompt longer.
    extra = grounded["usage"]["prompt_tokens"] - plain["usage"]["prompt_tokens"]
    assert extra > 60

    stored = await api.get(f"/v1/conversations/{grounded['conversation_id']}")
    user, assistant = stored.json()["messages"]
    assert user["sources"] is None
    assert assistant["sources"] == grounded["sources"]


async def test_min_score_drops_weak_chunks(api, documents):
    grounded = await chat(api, max_tokens=1, rag={"k": 3, "min_score": 0.3})
    assert [s["source_id"] for s in grounded["sources"]] == ["tides"]
    none = await chat(api, max_tokens=1, rag={"k": 3, "min_score": 0.99})
    assert none["sources"] == []


async def test_streamed_answer_carries_its_sources(api, documents):
    body = {"user_id": "u", "message": QUESTION, "stream": True, "max_tokens": 2, "rag": {"k": 1}}
    async with api.client.stream("POST", "/v1/chat", json=body, headers=api.auth) as response:
        events = [line async for line in response.aiter_lines() if line.startswith("data:")]
    assert '"source_id": "tides"' in events[-1]


@pytest.mark.parametrize(
    ("rag", "words"),
    [
        ({"k": 0}, "rag.k"),
        ({"k": 21}, "rag.k"),
        ({"min_score": 1.5}, "rag.min_score"),
        ({"top": 3}, "rag.top"),
        ("yes", "rag"),
    ],
)
async def test_bad_rag_options_are_422(api, rag, words):
    response = await api.post("/v1/chat", json={"user_id": "u", "message": "hi", "rag": rag})
    assert response.status_code == 422
    assert words in response.json()["error"]["message"]
