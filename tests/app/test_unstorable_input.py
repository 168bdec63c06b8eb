"""Nothing a client sends can fail to be stored: the NUL character (U+0000, which Postgres
text and jsonb cannot hold) and NaN/Infinity (which jsonb refuses) are answered 422 naming the
field, in every body, form, query and path; a model's NUL characters are dropped from what is
streamed and stored, so the turn is kept; and a value that still reaches Postgres unstorable
is a 422, never a 500."""

import json

import pytest
from sqlalchemy import text

from tests.conftest import controlled_backend, make_settings, start_api


@pytest.fixture(scope="module")
async def api(database_url, tmp_path_factory):
    settings = make_settings(database_url, storage_dir=tmp_path_factory.mktemp("objects"))
    async for started in start_api(settings, controlled_backend(timeout_s=5)):
        yield started


def refused(response, *words: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    for word in words:
        assert word in error["message"], error["message"]
    return error["message"]


NUL = "\x00"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/chat", {"user_id": "u", "message": f"hi{NUL}there"}, "message"),
        ("/v1/chat", {"user_id": f"u{NUL}", "message": "hi"}, "user_id"),
        (
            "/v1/chat",
            {"user_id": "u", "message": "hi", "history": [{"role": "user", "content": NUL}]},
            "history.0.content",
        ),
        ("/v1/documents", {"source_id": "d", "text": f"a{NUL}b"}, "text"),
        ("/v1/documents", {"source_id": "d", "title": f"T{NUL}", "text": "a"}, "title"),
        ("/v1/documents", {"source_id": "d", "text": "a", "metadata": {"k": NUL}}, "metadata"),
        ("/v1/jobs", {"kind": "embed", "texts": ["ok", f"bad{NUL}"]}, "texts"),
    ],
)
async def test_nul_in_a_json_body_is_refused_naming_the_field(api, path, body, field):
    message = refused(await api.post(path, json=body), field, "NUL character")
    assert "internal" not in message


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_numbers_are_refused(api, number):
    body = f'{{"source_id": "d", "text": "a", "metadata": {{"score": {number}}}}}'
    headers = {"Content-Type": "application/json"}
    refused(await api.post("/v1/documents", content=body, headers=headers), "metadata.score")
    chat = f'{{"user_id": "u", "message": "hi", "temperature": {number}}}'
    refused(await api.post("/v1/chat", content=chat, headers=headers), "temperature")
    search_filter = f'{{"metadata.n": {number}}}'
    search = await api.get("/v1/search", params={"q": "x", "filter": search_filter})
    assert search.status_code == 422 and number in search.json()["error"]["message"]


async def test_nul_in_forms_queries_and_paths_is_refused(api):
    form = await api.post(
        "/v1/documents",
        files={"file": ("notes.md", b"# Notes\nhello", "text/markdown")},
        data={"source_id": f"notes{NUL}"},
    )
    refused(form, "source_id", "NUL character")
    metadata = await api.post(
        "/v1/documents",
        files={"file": ("notes.md", b"# Notes\nhello", "text/markdown")},
        data={"metadata": json.dumps({"k": NUL})},
    )
    refused(metadata, "metadata", "NUL character")
    nan_metadata = await api.post(
        "/v1/documents",
        files={"file": ("notes.md", b"# Notes\nhello", "text/markdown")},
        data={"metadata": '{"k": NaN}'},
    )
    refused(nan_metadata, "metadata.k")
    refused(await api.get("/v1/search?q=a%00b"), "URL", "%00")
    refused(await api.get("/v1/conversations/user%00x"), "URL")
    escaped = await api.get("/v1/search", params={"q": "x", "filter": '{"source_id": "a\\u0000"}'})
    refused(escaped, "filter", "NUL character")
    binary = await api.post(
        "/v1/documents", files={"file": ("data.txt", b"text\x00more", "text/plain")}
    )
    refused(binary, "not text", "NUL byte")


async def test_a_models_nul_characters_are_dropped_and_the_turn_kept(api):
    answered = await api.post("/v1/chat", json={"user_id": "nul-user", "message": "nul:"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["assistant_message"] == "beforeafter"
    conversation = answered.json()["conversation_id"]
    stored = await api.get(f"/v1/conversations/{conversation}")
    assert [m["content"] for m in stored.json()["messages"]] == ["nul:", "beforeafter"]

    streamed = await api.post(
        "/v1/chat", json={"user_id": "nul-user", "message": "nul:", "stream": True}
    )
    assert streamed.status_code == 200
    events = [line for line in streamed.text.splitlines() if line.startswith("data:")]
    assert json.loads(events[0][5:]) == {"delta": "before"}
    assert json.loads(events[-1][5:])["assistant_message"] == "beforeafter"
    assert "\\u0000" not in streamed.text


async def test_an_unstorable_value_reaching_postgres_is_a_422_not_a_500(api):
    """The last guard: Postgres refusing a value answers 422 with what to fix."""

    @api.app.get("/unguarded")
    async def unguarded() -> None:
        async with api.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:v AS text)"), {"v": f"a{NUL}b"})

    refused(await api.get("/unguarded"), "NUL character")

    @api.app.get("/unguarded-json")
    async def unguarded_json() -> None:
        async with api.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:v AS jsonb)"), {"v": '{"n": NaN}'})

    refused(await api.get("/unguarded-json"), "finite")

    @api.app.get("/other-database-error")
    async def other() -> None:
        async with api.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1/0"))

    fault = await api.get("/other-database-error")  # a real fault stays one: a 500, logged
    assert fault.status_code == 500 and fault.json()["error"]["code"] == "internal_error"
