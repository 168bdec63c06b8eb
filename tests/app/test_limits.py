"""What one tenant may ask of the workers, written as the attacks: `n=5000` (vLLM takes up to
16384), a huge `max_tokens`, a prompt list of thousands, each refused naming the field before
any worker sees it; more requests in flight than TENANT_CONCURRENCY allows, a 429 with
Retry-After for that tenant only; and a model listing that starts no GPU worker."""

import asyncio

import httpx
import openai
import pytest

from app.inference.runpod import RunPodBackend, RunPodClient
from app.services.api_keys import create_api_key
from tests.conftest import controlled_backend, make_settings, start_api

MESSAGES = [{"role": "user", "content": "sleep: 1.5"}]


@pytest.fixture(scope="module")
async def api(database_url):
    settings = make_settings(
        database_url, tenant_concurrency={"llm": 2}, rate_limit_per_minute=100_000
    )
    async for started in start_api(settings, controlled_backend(timeout_s=10)):
        yield started


def client(api, key: str | None = None) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=api.client._transport, timeout=30)
    return openai.AsyncOpenAI(
        base_url="http://api/v1", api_key=key or api.key, http_client=http, max_retries=0
    )


@pytest.mark.parametrize(
    ("route", "body", "words"),
    [
        ("chat", {"n": 5000}, "n: 5000 is over this API's cap of 8 (MAX_N)"),
        ("chat", {"max_tokens": 10**6}, "max_tokens: 1000000 is over this API's cap of 4096"),
        ("chat", {"max_completion_tokens": 10**6}, "max_completion_tokens: 1000000 is over"),
        ("completions", {"best_of": 100}, "best_of: 100 is over this API's cap of 8 (MAX_N)"),
        ("completions", {"prompt": ["a"] * 300}, "prompt: 300 items are over this API's cap"),
        ("embeddings", {"input": ["a"] * 300}, "input: 300 items are over this API's cap"),
    ],
)
async def test_what_one_request_may_ask_is_capped(api, route, body, words):
    request = {
        "chat": ("/v1/chat/completions", {"model": "controlled", "messages": MESSAGES}),
        "completions": ("/v1/completions", {"model": "controlled", "prompt": "x"}),
        "embeddings": ("/v1/embeddings", {"model": "controlled", "input": "x"}),
    }[route]
    response = await api.post(request[0], json=request[1] | body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["param"] == next(iter(body))


async def test_a_tenants_requests_in_flight_are_capped_per_worker_type(api):
    ask = client(api).chat.completions.create
    answers = await asyncio.gather(
        *(ask(model="controlled", messages=MESSAGES) for _ in range(3)),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    [refused] = [answer for answer in answers if isinstance(answer, Exception)]
    assert isinstance(refused, openai.RateLimitError)
    assert refused.response.headers["Retry-After"] == "1"
    assert "TENANT_CONCURRENCY" in refused.message
    # Another tenant's requests are its own; and the slots come back once answered.
    other = await create_api_key(api.app.state.sessionmaker, "other tenant")
    both = await asyncio.gather(
        *(ask(model="controlled", messages=MESSAGES) for _ in range(2)),  # type: ignore[arg-type]
        client(api, other).chat.completions.create(model="controlled", messages=MESSAGES),  # type: ignore[arg-type]
    )
    assert len(both) == 3
    assert api.app.state.slots.busy == {}


async def test_listing_the_models_starts_no_gpu_worker():
    """The stack's models are listed from its config: RunPod is not asked (a request to an
    endpoint with no worker running would start one)."""
    asked: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(500)

    runpod = RunPodClient("http://runpod", "key", 5, transport=httpx.MockTransport(refuse))
    backend = RunPodBackend(runpod, {"llm": "llm", "embed": "embed"}, served=["chat", "minilm"])
    assert [card["id"] for card in await backend.models()] == ["chat", "minilm"]
    assert asked == []
