"""50 parallel chats to one conversation: every turn is stored, each answer next to its question.
The controlled worker echoes each question, so the test can tell which answer belongs where."""

import asyncio

import pytest

from tests.conftest import controlled_backend, make_settings, start_api


@pytest.fixture(scope="module")
async def api(database_url):
    async for started in start_api(make_settings(database_url), controlled_backend(timeout_s=10)):
        yield started


async def test_parallel_turns_lose_nothing(api):
    first = await api.post("/v1/chat", json={"user_id": "busy", "message": "start"})
    conversation_id = first.json()["conversation_id"]

    async def turn(i: int):
        return await api.post(
            "/v1/chat",
            json={
                "user_id": "busy",
                "message": f"question {i}",
                "conversation_id": conversation_id,
            },
        )

    responses = await asyncio.gather(*(turn(i) for i in range(50)))
    assert [r.status_code for r in responses] == [200] * 50

    messages = (await api.get(f"/v1/conversations/{conversation_id}")).json()["messages"]
    assert len(messages) == 2 + 2 * 50
    pairs = list(zip(messages[0::2], messages[1::2], strict=True))
    for question, answer in pairs:
        assert (question["role"], answer["role"]) == ("user", "assistant")
        assert answer["content"] == f"echo: {question['content']}"
        assert question["request_id"] == answer["request_id"]
    assert {q["content"] for q, _ in pairs[1:]} == {f"question {i}" for i in range(50)}
