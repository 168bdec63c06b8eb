"""`POST /v1/chat` with `stream: true`: Server-Sent Events, and the turn still stored."""

import json

import jsonschema
from sqlalchemy import func, select

from app.inference.local_models import TINY_LLM
from app.models import Message
from tests.conftest import controlled_backend, make_settings, start_api


def parse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def assert_documented(api, events: list[tuple[str, dict]]) -> None:
    """Each event is valid in the OpenAPI document's event schema, its data in the data schema
    the document gives for its name."""
    spec = (await api.client.get("/openapi.json")).json()
    chat = spec["paths"]["/v1/chat"]["post"]["responses"]["200"]["content"]
    assert "application/json" in chat  # the answer without streaming, still documented
    schema = chat["text/event-stream"]["schema"]
    by_name = {one["properties"]["event"]["const"]: one for one in schema["oneOf"]}
    for name, data in events:
        event = {"event": name, "data": json.dumps(data)}
        jsonschema.validate(event, {**schema, "components": spec["components"]})
        data_schema = by_name[name]["properties"]["data"]["contentSchema"]
        jsonschema.validate(data, {**data_schema, "components": spec["components"]})


async def test_stream_sends_deltas_then_the_stored_turn(api):
    body = {"user_id": "sse", "message": "a b c d e f", "stream": True, "temperature": 0}
    response = await api.post("/v1/chat", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    deltas = [data["delta"] for name, data in events if name == "delta"]
    name, done = events[-1]
    assert name == "done"
    assert len(deltas) >= 2
    assert "".join(deltas) == done["assistant_message"]
    assert done["usage"]["completion_tokens"] <= 16  # the workers' DEFAULT_MAX_TOKENS
    assert done["request_id"] == response.headers["x-request-id"]
    assert done["model_id"] == TINY_LLM
    await assert_documented(api, events)

    stored = (await api.get(f"/v1/conversations/{done['conversation_id']}")).json()
    assert [m["content"] for m in stored["messages"]] == [
        "a b c d e f",
        done["assistant_message"],
    ]


async def test_stream_errors_arrive_as_an_event_and_store_nothing(database_url):
    """Before the first byte, a failure is the request's error with its status, as without
    streaming; after it, an error event ends the stream. Neither stores a turn."""
    async for api in start_api(make_settings(database_url), controlled_backend()):
        async with api.app.state.sessionmaker() as session:
            before = await session.scalar(select(func.count()).select_from(Message))
        refused = await api.post(
            "/v1/chat", json={"user_id": "sse", "message": "fail: GPU fell off", "stream": True}
        )
        assert refused.status_code == 502
        assert refused.json()["error"]["code"] == "worker_failed"
        assert "GPU fell off" in refused.json()["error"]["message"]
        response = await api.post(
            "/v1/chat", json={"user_id": "sse", "message": "break: 2", "stream": True}
        )
        assert response.status_code == 200
        events = parse_events(response.text)
        assert [name for name, _ in events] == ["delta", "delta", "error"]
        error = events[-1][1]["error"]
        assert error["code"] == "worker_failed"
        assert "the engine broke" in error["message"]
        await assert_documented(api, events)
        async with api.app.state.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Message)) == before


async def test_stream_validation_happens_before_streaming(api):
    response = await api.post(
        "/v1/chat",
        json={
            "user_id": "sse",
            "message": "hi",
            "stream": True,
            "conversation_id": "00000000-0000-0000-0000-000000000000",
        },
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
