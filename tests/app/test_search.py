"""Search over documents with the real all-MiniLM-L6-v2 (vLLM on the CPU) and pgvector: a
relevance test on a corpus written for it, filters, and every refusal."""

import pytest

from tests.app.corpus import PASSAGES, QUESTIONS

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
async def corpus(api) -> dict[str, str]:
    """The corpus uploaded, one document per passage: source_id -> document id."""
    ids = {}
    for n, (source_id, passage) in enumerate(PASSAGES.items()):
        body = {
            "source_id": source_id,
            "title": source_id.replace("_", " "),
            "text": passage,
            "metadata": {"shelf": "even" if n % 2 == 0 else "odd", "n": n},
        }
        response = await api.post("/v1/documents", json=body)
        assert response.status_code == 201, response.text
        ids[source_id] = response.json()["id"]
    return ids


async def search(api, **params) -> list[dict]:
    response = await api.get("/v1/search", params=params)
    assert response.status_code == 200, response.text
    return response.json()["hits"]


async def test_recall_at_3_on_the_written_corpus(api, corpus):
    found = 0
    for question, answer in QUESTIONS.items():
        hits = await search(api, q=question, k=3)
        found += answer in [hit["source_id"] for hit in hits]
    recall = found / len(QUESTIONS)
    assert recall >= 0.9, f"recall@3 {recall:.2f}"


async def test_hits_are_ranked_and_complete(api, corpus):
    hits = await search(api, q="How many kilometres is a marathon?", k=5)
    assert len(hits) == 5
    top = hits[0]
    assert top["source_id"] == "marathon" and top["document_id"] == corpus["marathon"]
    assert top["title"] == "marathon" and top["chunk"] == PASSAGES["marathon"]
    assert top["heading"] == "" and top["metadata"]["shelf"] in ("even", "odd")
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True) and 0.4 < scores[0] <= 1.0


async def test_filters_narrow_the_hits(api, corpus):
    hits = await search(api, q="chess castling", k=50, filter='{"metadata.shelf": "odd"}')
    assert hits and {hit["metadata"]["shelf"] for hit in hits} == {"odd"}
    assert len(hits) == 15  # every odd passage, found through the filtered index scan
    only = await search(api, q="castling", filter='{"source_id": "volcano"}')
    assert [hit["source_id"] for hit in only] == ["volcano"]
    by_id = await search(api, q="x", filter=f'{{"document_id": "{corpus["tea"]}"}}')
    assert [hit["source_id"] for hit in by_id] == ["tea"]
    numbers = await search(api, q="x", filter='{"metadata.n": 3, "content_type": "text/markdown"}')
    assert [hit["source_id"] for hit in numbers] == [list(PASSAGES)[3]]
    assert await search(api, q="x", filter='{"metadata.shelf": "none"}') == []


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 1001}, "q"),
        ({}, "q"),
        ({"q": "x", "k": 0}, "k"),
        ({"q": "x", "k": 51}, "k"),
        ({"q": "x", "kind": "audio"}, "kind"),
        ({"q": "x", "filter": '{"author": "me"}'}, "unknown filter field 'author'"),
        ({"q": "x", "filter": '{"metadata.a.b": 1}'}, "unknown filter field"),
        ({"q": "x", "filter": "source_id=a"}, "JSON object"),
        ({"q": "x", "filter": "[1]"}, "JSON object"),
        ({"q": "x", "filter": '{"source_id": {"$ne": 1}}'}, "string, number or boolean"),
        ({"q": "x", "filter": '{"document_id": "nope"}'}, "not a UUID"),
    ],
)
async def test_bad_searches_are_422_with_the_reason(api, params, words):
    response = await api.get("/v1/search", params=params)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]["message"]


async def test_search_needs_a_key(api):
    assert (await api.client.get("/v1/search", params={"q": "x"})).status_code == 401
