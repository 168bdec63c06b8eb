"""What a reliability probe found, each written as the failure it was: a retried turn stored
twice, a stream cut by a lost database ending with another code than the request's, a stream
refused after a 200, a 405 naming only some of a path's methods, a deep JSON body told to be
UTF-8, the Hub's outage typed as the client's error."""

import uuid

import asyncpg
import pytest
from sqlalchemy import func, select

from app.core.errors import error_body
from app.models import Message
from tests.app.test_chat_stream import parse_events
from tests.conftest import controlled_backend, make_settings, start_api


@pytest.fixture(scope="module")
async def api(database_url):
    settings = make_settings(database_url, rate_limit_per_minute=100_000)
    async for started in start_api(settings, controlled_backend(timeout_s=10)):
        yield started


async def messages_of(api, conversation_id) -> int:
    async with api.app.state.engine.connect() as conn:
        return await conn.scalar(
            select(func.count()).where(Message.conversation_id == uuid.UUID(conversation_id))
        )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_retried_turn_with_its_idempotency_key_is_stored_once(api, stream):
    body = {"user_id": "retry", "message": "once only", "stream": stream}
    key = {"Idempotency-Key": f"turn-{uuid.uuid4()}"}
    first = await api.post("/v1/chat", json=body, headers=key)
    assert first.status_code == 200, first.text
    again = await api.post("/v1/chat", json=body, headers=key)  # the client's retry
    if stream:
        [(_, done)] = [event for event in parse_events(first.text) if event[0] == "done"]
        replayed = parse_events(again.text)
        assert [name for name, _ in replayed] == ["delta", "done"]
        assert replayed[0][1]["delta"] == done["assistant_message"] and replayed[1][1] == done
    else:
        done = first.json()
        assert again.json() == done
    assert await messages_of(api, done["conversation_id"]) == 2  # one turn
    other = await api.post("/v1/chat", json=body | {"message": "another"}, headers=key)
    assert other.status_code == 422
    assert "used for a different request" in other.json()["error"]["message"]


async def test_a_stream_refused_before_its_first_byte_has_the_requests_status(api):
    refused = await api.post(
        "/v1/chat/completions",
        json={
            "model": "controlled",
            "stream": True,
            "messages": [{"role": "user", "content": "fail: no"}],
        },
    )
    assert refused.status_code == 502 and refused.json()["error"]["code"] == "worker_failed"


async def test_a_stream_whose_database_goes_ends_with_the_requests_code(api, monkeypatch):
    """The driver's own errors for a closed connection (asyncpg's, not wrapped) end a stream
    with `database_unavailable`, the code the request without streaming gets."""
    for error in (
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.InterfaceError("cannot perform operation: connection is closed"),
    ):

        async def lost(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr("app.api.routes.chat.save_turn", lost)
        response = await api.post(
            "/v1/chat", json={"user_id": "db", "message": "stream: 2", "stream": True}
        )
        events = parse_events(response.text)
        assert events[-1][0] == "error"
        assert events[-1][1]["error"]["code"] == "database_unavailable"
        plain = await api.post("/v1/chat", json={"user_id": "db", "message": "hi"})
        assert plain.status_code == 503 and plain.json()["error"]["code"] == "database_unavailable"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/images/generations", "POST"),
        ("PUT", f"/v1/images/{uuid.uuid4()}", "DELETE, GET"),
        ("DELETE", "/v1/chat", "POST"),
    ],
)
async def test_a_405_lists_every_method_of_the_path(api, method, path, allow):
    response = await api.client.request(method, path, headers=api.auth)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_a_deeply_nested_body_is_told_so(api):
    deep = "[" * 10_000 + "]" * 10_000
    response = await api.client.post(
        "/v1/chat",
        content=deep,
        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "nested too deeply" in response.json()["error"]["message"]


def test_the_hubs_outage_is_a_server_error():
    assert error_body("hub_unavailable", "down", "r")["error"]["type"] == "server_error"
    assert error_body("runpod_unavailable", "down", "r")["error"]["type"] == "server_error"
