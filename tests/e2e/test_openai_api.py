"""The API's OpenAI routes with the official `openai` client, on both backends: `local` (the
workers in the API's process) and `runpod` (the endpoint's OpenAI passthrough on the emulator,
real worker processes under the runpod SDK)."""

import httpx
import numpy as np
import openai
import pytest

from tests.app.test_embeddings import CLIP, png_data_url
from tests.conftest import (
    HMAC_SECRET,
    controlled_backend,
    make_settings,
    runpod_settings,
    start_api,
)
from tests.e2e.test_openai_through_runpod import json_schema_answer_and_tool_call_round_trip
from tests.speech import encoded, spoken, words

pytestmark = pytest.mark.vllm

MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
async def runpod_api(database_url, emulator):
    settings = runpod_settings(database_url, emulator, signing_secret=HMAC_SECRET)
    async for api in start_api(settings):
        yield api


@pytest.fixture(params=["api", "runpod_api"])
def either_api(request):
    """The API on the local backend (conftest's `api`) or on the runpod one."""
    return request.getfixturevalue(request.param)


def client(api, key: str | None = None) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=api.client._transport, timeout=60)
    return openai.AsyncOpenAI(
        base_url="http://api/v1", api_key=key or api.key, http_client=http, max_retries=0
    )


async def chat_model(api) -> str:
    """The chat model's id: the first listed (the text embedding model and CLIP follow)."""
    [chat, text_embedding, clip] = [m.id async for m in client(api).models.list()]
    assert text_embedding == "all-MiniLM-L6-v2" and clip == CLIP
    return chat


async def test_chat_completion_and_its_stream(either_api):
    llm, model = client(either_api), await chat_model(either_api)
    whole = await llm.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    [choice] = whole.choices
    assert choice.finish_reason == "length" and choice.logprobs is not None
    assert [len(t.top_logprobs) for t in choice.logprobs.content or []] == [2] * 5
    stream = await llm.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


async def test_json_schema_answer_and_tool_call_round_trip(either_api, local_backend):
    # Both backends' tiny Llamas are built alike: the local one's tokenizer is theirs.
    tokenizer = local_backend.workers["llm"].engine.tokenizer
    await json_schema_answer_and_tool_call_round_trip(
        client(either_api), await chat_model(either_api), tokenizer
    )


async def test_completion(either_api):
    model = await chat_model(either_api)
    llm = client(either_api)
    completion = await llm.completions.create(model=model, prompt="Tandem", max_tokens=3)
    assert completion.usage is not None and completion.usage.completion_tokens == 3


async def test_refusals_arrive_as_the_clients_errors_in_openais_shape(either_api):
    llm, model = client(either_api), await chat_model(either_api)
    with pytest.raises(openai.NotFoundError) as missing:
        await llm.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert missing.value.type == "invalid_request_error" and "gpt-4o" in missing.value.message
    with pytest.raises(openai.BadRequestError) as unknown:
        await llm.chat.completions.create(
            model=model,
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_body={"temprature": 0.1},
        )
    assert unknown.value.param == "temprature"
    with pytest.raises(openai.BadRequestError) as invalid:
        await llm.chat.completions.create(model=model, messages=MESSAGES, temperature=-1)  # type: ignore[arg-type]
    assert "temperature" in invalid.value.message
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        await client(either_api, key="tdm_not-a-key").models.list()
    assert unauthenticated.value.type == "authentication_error"


async def test_text_and_clip_embeddings(either_api):
    """The SDK asks for base64 unless told otherwise: both encodings decode to the same
    unit-length vectors."""
    embeddings = client(either_api).embeddings
    text = await embeddings.create(model="all-MiniLM-L6-v2", input=["a cat", "a dog"])
    assert [len(item.embedding) for item in text.data] == [384, 384]
    floats = await embeddings.create(
        model="all-MiniLM-L6-v2", input=["a cat", "a dog"], encoding_format="float"
    )
    assert np.allclose([i.embedding for i in text.data], [i.embedding for i in floats.data])
    assert text.usage.prompt_tokens > 0
    mixed = await embeddings.create(model=CLIP, input=["a cat", png_data_url((200, 0, 0))])
    assert [len(item.embedding) for item in mixed.data] == [512, 512]
    assert all(np.isclose(np.linalg.norm(item.embedding), 1.0) for item in mixed.data)
    with pytest.raises(openai.NotFoundError) as missing:
        await embeddings.create(model="text-embedding-3-small", input="x")
    assert "text-embedding-3-small" in missing.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        await embeddings.create(model=CLIP, input="x", dimensions=8)
    assert bad.value.param == "dimensions"


async def test_transcription_and_its_refusal(either_api):
    """Speech to text through the SDK: in-process, or the real worker process behind the
    emulator; a request the English-only model cannot do is the client's error (422)."""
    audio = client(either_api).audio
    result = await audio.transcriptions.create(
        model="whisper-1",
        file=("fox.webm", encoded(spoken(), "webm")),
        response_format="verbose_json",
    )
    assert {"quick", "brown", "fox"} <= words(result.text) and result.language == "en"
    with pytest.raises(openai.UnprocessableEntityError, match="English-only"):
        await audio.translations.create(model="whisper-1", file=("fox.wav", spoken()))


async def stored_messages(api, conversation_id: str) -> list[tuple[str, str]]:
    response = await api.get(f"/v1/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"]) for m in response.json()["messages"]]


async def test_a_named_conversation_stores_each_turn(either_api):
    """`new` starts a conversation (its id comes back in the header); its id adds turns; the
    stored answer is what the client got, whole or streamed."""
    llm, model = client(either_api), await chat_model(either_api)
    created = await llm.chat.completions.with_raw_response.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=4,
        user="ada",
        extra_headers={"X-Conversation-Id": "new"},
    )
    conversation_id = created.headers["X-Conversation-Id"]
    first = created.parse().choices[0].message.content
    stream = await llm.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [{"type": "text", "text": "And then?"}]}],
        max_tokens=4,
        user="ada",
        stream=True,
        extra_headers={"X-Conversation-Id": conversation_id},
    )
    second = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert await stored_messages(either_api, conversation_id) == [
        ("user", "Hello"),
        ("assistant", first),
        ("user", "And then?"),
        ("assistant", second),
    ]
    listed = (await either_api.get("/v1/users/ada/conversations")).json()["conversations"]
    assert [c["id"] for c in listed] == [conversation_id]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_retried_stored_completion_is_stored_once(api, stream):
    """With an Idempotency-Key, the client's retry (after a dropped connection) replays the
    stored answer, streamed or not, and stores no second turn."""
    llm, model = client(api), await chat_model(api)
    key = f"completion-{stream}-{id(llm)}"

    async def answer() -> tuple[str, str | None]:
        raw = await llm.chat.completions.with_raw_response.create(
            model=model,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=4,
            user="retry",
            stream=stream,
            extra_headers={"X-Conversation-Id": "new", "Idempotency-Key": key},
        )
        if not stream:
            return raw.headers["X-Conversation-Id"], raw.parse().choices[0].message.content
        chunks = [chunk async for chunk in raw.parse() if chunk.choices]  # type: ignore[union-attr]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
        return raw.headers["X-Conversation-Id"], text

    first, again = await answer(), await answer()
    assert first == again
    assert len(await stored_messages(api, first[0])) == 2


async def test_without_the_header_nothing_is_stored(api):
    llm, model = client(api), await chat_model(api)
    await llm.chat.completions.create(model=model, messages=MESSAGES, max_tokens=2, user="bo")  # type: ignore[arg-type]
    assert (await api.get("/v1/users/bo/conversations")).json()["conversations"] == []


@pytest.mark.parametrize(
    ("fields", "header", "param"),
    [
        ({}, "new", "user"),
        ({"user": "cy", "messages": [{"role": "assistant", "content": "hi"}]}, "new", "messages"),
        ({"user": "cy", "messages": [{"role": "user", "content": "x\u0000"}]}, "new", "messages"),
        ({"user": "cy"}, "not-an-id", "X-Conversation-Id"),
    ],
)
async def test_what_cannot_be_stored_is_a_400_before_the_model_runs(api, fields, header, param):
    body = {"model": "any", "messages": MESSAGES, "max_tokens": 2} | fields
    response = await api.post(
        "/v1/chat/completions", json=body, headers={"X-Conversation-Id": header}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert (await api.get("/v1/users/cy/conversations")).json()["conversations"] == []


async def test_another_users_or_an_unknown_conversation_is_404(api):
    llm, model = client(api), await chat_model(api)
    created = await llm.chat.completions.with_raw_response.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=2,
        user="dee",
        extra_headers={"X-Conversation-Id": "new"},
    )
    for user, conversation_id in [
        ("eve", created.headers["X-Conversation-Id"]),
        ("dee", "6f1c1e32-9f0b-4d5e-8a43-1b2f3c4d5e6f"),
    ]:
        with pytest.raises(openai.NotFoundError):
            await llm.chat.completions.create(
                model=model,
                messages=MESSAGES,  # type: ignore[arg-type]
                user=user,
                extra_headers={"X-Conversation-Id": conversation_id},
            )
    assert len(await stored_messages(api, created.headers["X-Conversation-Id"])) == 2


async def test_a_refused_request_stores_nothing(api):
    with pytest.raises(openai.NotFoundError):
        await client(api).chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            user="fay",
            extra_headers={"X-Conversation-Id": "new"},
        )
    assert (await api.get("/v1/users/fay/conversations")).json()["conversations"] == []


async def test_a_stream_that_breaks_ends_with_an_error_event_and_stores_nothing(database_url):
    """The SDK raises the error event; the chunks before it were the client's, not a turn."""
    async for api in start_api(make_settings(database_url), controlled_backend()):
        stream = await client(api).chat.completions.create(
            model="controlled",
            messages=[{"role": "user", "content": "break: 3"}],
            user="gus",
            stream=True,
            extra_headers={"X-Conversation-Id": "new"},
        )
        received = []
        with pytest.raises(openai.APIError, match="the engine broke"):
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content)
        assert received == ["t0 ", "t1 ", "t2 "]
        assert (await api.get("/v1/users/gus/conversations")).json()["conversations"] == []
