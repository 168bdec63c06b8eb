"""The API over a real Postgres with the real workers in-process (a tiny random Llama): health,
auth, rate limits, chat, conversations, request ids and every bad-input path."""

import threading
import uuid

import pytest
from sqlalchemy import func, select

from app.inference.local import LocalBackend
from app.inference.local_models import TINY_LLM
from app.models import Message
from app.services.api_keys import create_api_key
from gpu_worker.common.worker_types import WORKER_TYPES
from tests.conftest import app_client, controlled_backend, make_settings, start_api
from tests.workers.controlled import ControlledWorker


async def message_count(api) -> int:
    async with api.app.state.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(Message))


def prompt_tokens(local_backend, messages: list[dict[str, str]]) -> int:
    """How many tokens `messages` make through the chat model's template."""
    tokenizer = local_backend.workers["llm"].engine.tokenizer
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return len(ids)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


# -- health, readiness, request ids -------------------------------------------------------
async def test_health_needs_no_key(api):
    response = await api.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


async def test_readiness_checks_the_database_storage_and_the_models(api):
    response = await api.client.get("/readiness")
    models = {f"{name}_model": "ready" for name in WORKER_TYPES}
    checks = {"database": "ok", "storage": "ok", **models}
    assert response.json() == {"ok": True, "checks": checks}


class SlowToLoad(ControlledWorker):
    """A worker whose model loads until the test lets it (or fails to load)."""

    def __init__(self, error: str | None = None) -> None:
        self.release = threading.Event()
        self.error = error

    def load(self) -> None:
        self.release.wait(10)
        if self.error:
            raise RuntimeError(self.error)


async def test_models_still_loading_are_not_ready_and_jobs_wait(database_url):
    slow = SlowToLoad()
    backend = LocalBackend({"llm": lambda: slow, "embed": ControlledWorker}, timeout_s=0.5)
    async for api in start_api(make_settings(database_url), backend):
        response = await api.client.get("/readiness")
        assert response.status_code == 503
        assert response.json()["checks"]["llm_model"] == "loading"
        assert "llm_model loading" in response.json()["error"]["message"]
        chat = await api.post("/v1/chat", json={"user_id": "u", "message": "hi"})
        error = assert_error(chat, 503, "worker_unavailable")
        assert "chat model is still loading" in error["message"]
        slow.release.set()
        await backend.wait_loaded()
        assert (await api.client.get("/readiness")).status_code == 200
        chat = await api.post("/v1/chat", json={"user_id": "u", "message": "hi"})
        assert chat.json()["assistant_message"] == "echo: hi"


async def test_a_model_that_failed_to_load_says_why(database_url):
    broken = SlowToLoad(error="no such model: qwen-99")
    broken.release.set()
    backend = LocalBackend({"llm": lambda: broken}, timeout_s=5)
    async for api in start_api(make_settings(database_url), backend):
        await backend.wait_loaded()
        response = await api.client.get("/readiness")
        assert (response.status_code, response.json()["checks"]) == (
            503,
            {"database": "ok", "storage": "ok", "llm_model": "failed"},
        )
        chat = await api.post("/v1/chat", json={"user_id": "u", "message": "hi"})
        error = assert_error(chat, 503, "worker_unavailable")
        assert "the chat model failed to load: no such model: qwen-99" in error["message"]


async def test_readiness_names_the_failing_check(tmp_path, caplog):
    """Open to anyone, it says which check fails; why (asyncpg's own words) is in the log."""
    broken = f"postgresql+asyncpg://postgres@/nodb?host={tmp_path}"
    settings = make_settings(broken, migrate_on_start=False)
    from app.main import create_app

    async with app_client(create_app(settings, controlled_backend())) as client:
        response = await client.get("/readiness")
        assert response.status_code == 503
        assert response.json()["checks"]["database"] == "failed"
        assert response.json()["error"]["message"].startswith("not ready: database failed")
        assert "FileNotFoundError" not in response.text
        reason = "database failed: FileNotFoundError: [Errno 2] No such file or directory"
        assert reason in caplog.text
        chat = await client.post(
            "/v1/chat",
            json={"user_id": "u", "message": "hi"},
            headers={"Authorization": "Bearer tdm_whatever"},
        )
        assert_error(chat, 503, "database_unavailable")


async def test_request_id_is_echoed_or_made(api):
    given = await api.client.get("/health", headers={"X-Request-ID": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123"
    made = await api.client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] not in ("", "bad id with spaces")


async def test_unknown_route_is_a_json_404(api):
    assert_error(await api.client.get("/nope"), 404, "not_found")


# -- API keys and rate limits ---------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [None, "Bearer ", "Bearer tdm_not-a-real-key", "Bearer sk-other-format", "Basic abc"],
)
async def test_requests_without_a_valid_key_are_refused(api, header):
    headers = {"Authorization": header} if header is not None else {}
    before = await message_count(api)
    response = await api.client.post(
        "/v1/chat", json={"user_id": "u", "message": "hi"}, headers=headers
    )
    assert_error(response, 401, "unauthorized")
    assert await message_count(api) == before


async def test_revoked_key_is_refused(api):
    key = await create_api_key(api.app.state.sessionmaker, "short-lived")
    headers = {"Authorization": f"Bearer {key}"}
    assert (await api.client.get("/v1/users/u/conversations", headers=headers)).status_code == 200
    async with api.app.state.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE name = 'short-lived'")
        )
    response = await api.client.get("/v1/users/u/conversations", headers=headers)
    assert_error(response, 401, "unauthorized")


async def test_rate_limit_answers_429_with_retry_after(database_url):
    settings = make_settings(database_url, rate_limit_per_minute=3)
    async for limited in start_api(settings, controlled_backend()):
        statuses = []
        for _ in range(4):
            response = await limited.get("/v1/users/u/conversations")
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429]
        error = assert_error(response, 429, "rate_limited")
        assert "3 requests a minute" in error["message"]
        assert 1 <= int(response.headers["retry-after"]) <= 60


# -- chat -----------------------------------------------------------------------------------
async def test_chat_answers_and_stores_both_turns(api, local_backend):
    response = await api.post(
        "/v1/chat", json={"user_id": "alice", "message": "hello world", "temperature": 0}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == TINY_LLM
    assert body["request_id"] == response.headers["x-request-id"]
    user = {"role": "user", "content": "hello world"}
    assert body["usage"]["prompt_tokens"] == prompt_tokens(local_backend, [user])
    assert 1 <= body["usage"]["completion_tokens"] <= 16  # the workers' DEFAULT_MAX_TOKENS
    name, duration = response.headers["server-timing"].split(";dur=")
    assert name == "worker"
    assert 0 < float(duration) < response.elapsed.total_seconds() * 1000

    stored = await api.get(f"/v1/conversations/{body['conversation_id']}")
    assert stored.status_code == 200
    messages = stored.json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello world"),
        ("assistant", body["assistant_message"]),
    ]
    assert stored.json()["title"] == "hello world"


async def test_follow_up_turn_gets_the_stored_history(api, local_backend):
    first = (await api.post("/v1/chat", json={"user_id": "bob", "message": "one two"})).json()
    second = await api.post(
        "/v1/chat",
        json={"user_id": "bob", "message": "three", "conversation_id": first["conversation_id"]},
    )
    history = [
        {"role": "user", "content": "one two"},
        {"role": "assistant", "content": first["assistant_message"]},
        {"role": "user", "content": "three"},
    ]
    assert second.json()["usage"]["prompt_tokens"] == prompt_tokens(local_backend, history)
    assert second.json()["conversation_id"] == first["conversation_id"]


async def test_a_conversation_outgrowing_the_context_goes_on_with_its_newest_turns(
    api, local_backend
):
    """No dead end: once the stored turns no longer fit the model's context, each new turn is
    answered from the newest turns that fit, and the response says how many were used."""
    engine = local_backend.workers["llm"].engine
    context = engine.max_model_len
    per_word = len(engine.text_prompt("word " * 100)) / 100
    question = "word " * int(context / 8 / per_word)  # about an eighth of the context
    used, conversation = [], None
    for _ in range(8):
        body = {"user_id": "long", "message": question, "conversation_id": conversation}
        response = await api.post("/v1/chat", json=body)
        assert response.status_code == 200, response.text
        conversation = response.json()["conversation_id"]
        used.append(response.json()["history_used"])
        usage = response.json()["usage"]
        assert usage["prompt_tokens"] + usage["completion_tokens"] <= context
    assert used[:2] == [0, 2]  # all of it while it fits
    assert used[-1] < 14 and used[-1] % 2 == 0  # then the newest whole turns
    stored = (await api.get(f"/v1/conversations/{conversation}")).json()["messages"]
    assert len(stored) == 16  # every turn kept, whatever the model was given


async def test_given_history_replaces_the_stored_one(api, local_backend):
    first = (await api.post("/v1/chat", json={"user_id": "bob", "message": "one two"})).json()
    given = [{"role": "system", "content": "be brief"}]
    response = await api.post(
        "/v1/chat",
        json={
            "user_id": "bob",
            "message": "three",
            "conversation_id": first["conversation_id"],
            "history": given,
        },
    )
    expected = prompt_tokens(local_backend, [*given, {"role": "user", "content": "three"}])
    assert response.json()["usage"]["prompt_tokens"] == expected


async def test_max_tokens_reaches_the_worker(api):
    response = await api.post(
        "/v1/chat",
        json={"user_id": "u", "message": "a b c d e f", "max_tokens": 3, "temperature": 0},
    )
    assert response.json()["usage"]["completion_tokens"] == 3


async def test_max_tokens_beyond_the_context_is_the_clients_to_fix(api):
    before = await message_count(api)
    response = await api.post(
        "/v1/chat", json={"user_id": "u", "message": "hi", "max_tokens": 4000}
    )
    error = assert_error(response, 422, "invalid_input")  # not an outage: no 502
    assert "does not fit" in error["message"]
    assert await message_count(api) == before


async def test_a_prompt_longer_than_the_context_is_too_large(api):
    before = await message_count(api)
    response = await api.post("/v1/chat", json={"user_id": "u", "message": "word " * 3000})
    error = assert_error(response, 413, "input_too_large")
    assert "the model's context is" in error["message"]
    assert await message_count(api) == before


async def test_user_conversations_are_listed_newest_first(api):
    ids = []
    for text in ("first", "second"):
        ids.append((await api.post("/v1/chat", json={"user_id": "carol", "message": text})).json())
    listed = (await api.get("/v1/users/carol/conversations")).json()["conversations"]
    assert [c["id"] for c in listed] == [ids[1]["conversation_id"], ids[0]["conversation_id"]]
    assert (await api.get("/v1/users/nobody/conversations")).json() == {"conversations": []}


async def test_unknown_conversation_is_404_and_writes_nothing(api):
    before = await message_count(api)
    missing = uuid.uuid4()
    response = await api.post(
        "/v1/chat", json={"user_id": "u", "message": "hi", "conversation_id": str(missing)}
    )
    assert_error(response, 404, "not_found")
    assert_error(await api.get(f"/v1/conversations/{missing}"), 404, "not_found")
    assert await message_count(api) == before


async def test_another_users_conversation_is_404(api):
    first = (await api.post("/v1/chat", json={"user_id": "dave", "message": "mine"})).json()
    response = await api.post(
        "/v1/chat",
        json={"user_id": "eve", "message": "hi", "conversation_id": first["conversation_id"]},
    )
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "hi"}, "user_id"),
        ({"user_id": "u"}, "message"),
        ({"user_id": "u", "message": ""}, "message"),
        ({"user_id": "u", "message": "   \n "}, "message"),
        ({"user_id": "u", "message": 42}, "message"),
        ({"user_id": "u", "message": "hi", "max_tokens": 0}, "max_tokens"),
        ({"user_id": "u", "message": "hi", "max_tokens": 100_000}, "max_tokens"),
        ({"user_id": "u", "message": "hi", "temperature": 3}, "temperature"),
        ({"user_id": "u", "message": "hi", "conversation_id": "nope"}, "conversation_id"),
        ({"user_id": "u", "message": "hi", "history": [{"role": "robot", "content": "x"}]}, "role"),
        ({"user_id": "u", "message": "hi", "surprise": 1}, "surprise"),
        ({"user_id": "u", "message": "x" * 32_001}, "message"),
    ],
)
async def test_invalid_chat_requests_are_422_and_write_nothing(api, body, field):
    before = await message_count(api)
    error = assert_error(await api.post("/v1/chat", json=body), 422, "validation_error")
    assert field in error["message"]
    assert await message_count(api) == before


@pytest.mark.parametrize("content", [b'{"user_id": "u", "message": ', b'{"user_id": "\xff"}'])
async def test_malformed_json_is_422(api, content):
    response = await api.post(
        "/v1/chat", content=content, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "validation_error")


async def test_oversized_body_is_413(api):
    big = {
        "user_id": "u",
        "message": "x",
        "history": [{"role": "user", "content": "y" * 30_000}] * 40,
    }
    before = await message_count(api)
    error = assert_error(await api.post("/v1/chat", json=big), 413, "body_too_large")
    assert error["message"] == "request body over the limit of 1000000 bytes"
    assert await message_count(api) == before


# -- worker failures ------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def controlled_api(database_url):
    """The API whose in-process workers follow the commands in the message."""
    async for started in start_api(make_settings(database_url), controlled_backend(timeout_s=1)):
        yield started


@pytest.mark.parametrize(
    ("message", "status", "code"),
    [
        ("fail: CUDA out of memory", 502, "worker_failed"),
        ("raise: engine crashed", 502, "worker_failed"),
        ("sleep: 3", 504, "worker_timeout"),
    ],
)
async def test_failed_generation_writes_nothing(controlled_api, message, status, code):
    before = await message_count(controlled_api)
    response = await controlled_api.post("/v1/chat", json={"user_id": "u", "message": message})
    error = assert_error(response, status, code)
    if status == 502:
        assert message.split(": ", 1)[1] in error["message"]
    assert await message_count(controlled_api) == before


async def test_unreachable_runpod_is_503(database_url):
    from tests.conftest import free_port

    settings = make_settings(
        database_url,
        inference_backend="runpod",
        runpod_api_base=f"http://127.0.0.1:{free_port()}/v2",
    )
    async for offline in start_api(settings):
        response = await offline.post("/v1/chat", json={"user_id": "u", "message": "hi"})
        assert_error(response, 503, "worker_unavailable")


async def test_oversized_chunked_body_is_413(api):
    async def chunks():
        yield b'{"user_id": "u", "message": "'
        for _ in range(40):
            yield b"x" * 30_000
        yield b'"}'

    response = await api.post(
        "/v1/chat", content=chunks(), headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 413, "body_too_large")
    assert error["message"] == "request body over the limit of 1000000 bytes"
