"""Usage and budgets through the API on the controlled worker: every answer a worker gives is a
usage row priced at its GPU's price a second (a stored turn's written with it), read back by
`GET /v1/usage` for the tenant only; a key or tenant past its monthly budget is refused with
`insufficient_quota` (the `openai` client's RateLimitError) before any worker sees the request,
and a tenant's alert threshold sends its signed webhook once."""

import asyncio
import json
import uuid

import httpx
import openai
import pytest
from sqlalchemy import select

from app.__main__ import main
from app.inference.local import LocalBackend
from app.models import ApiKey, Spend
from app.services import deployment_webhooks
from app.services.api_keys import create_api_key, hash_key
from app.services.budgets import set_tenant_budget
from gpu_worker.common.worker_types import WORKER_TYPES
from tests.app.test_api import assert_error
from tests.app.test_cli import run_cli
from tests.conftest import Api, make_settings, start_api, usage_of
from tests.net import receiver
from tests.workers.controlled import ControlledWorker

PRICES = {"llm": 0.01, "embed": 0.002}  # USD a second
MESSAGES = [{"role": "user", "content": "sleep: 0.05"}]


class CountedBackend(LocalBackend):
    """The controlled worker in-process, counting the jobs it is given."""

    jobs = 0

    def _stream(self, *args, **kwargs):
        self.jobs += 1
        return super()._stream(*args, **kwargs)


@pytest.fixture(scope="module")
async def api(database_url):
    backend = CountedBackend(dict.fromkeys(WORKER_TYPES, ControlledWorker), 10)
    settings = make_settings(database_url, gpu_prices=PRICES)
    async for started in start_api(settings, backend):
        yield started


async def tenant_api(api: Api, budget: float | None = None) -> tuple[Api, uuid.UUID]:
    """A client with a new key of a tenant of its own, and the key's id."""
    key = await create_api_key(api.app.state.sessionmaker, "usage", monthly_budget_usd=budget)
    async with api.app.state.sessionmaker() as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key)))
    return Api(api.app, api.client, key), key_id


def sdk(api: Api) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=api.client._transport, timeout=30)
    return openai.AsyncOpenAI(
        base_url="http://api/v1", api_key=api.key, http_client=http, max_retries=0
    )


async def spent(api: Api, key_id: uuid.UUID) -> float:
    async with api.app.state.sessionmaker() as session:
        return await session.scalar(select(Spend.usd).where(Spend.api_key_id == key_id)) or 0.0


async def test_each_answer_is_a_usage_row_priced_by_its_gpu_second(api):
    caller, key_id = await tenant_api(api)
    response = await caller.post("/v1/chat", json={"user_id": "u", "message": "hello there"})
    assert response.status_code == 200, response.text
    # Written in the turn's own statement: there as soon as the answer is.
    [turn] = await usage_of(caller)
    assert (turn.route, turn.worker, turn.endpoint, turn.model) == (
        "/v1/chat",
        "llm",
        "local/llm",
        "controlled",
    )
    assert (turn.input_tokens, turn.output_tokens) == (1, 3)  # "echo: hello there"
    assert turn.execution_ms > 0 and turn.delay_ms is None  # measured here: no RunPod queue
    assert turn.cost_usd == pytest.approx(PRICES["llm"] * turn.execution_ms / 1000)
    assert turn.billed_to == "stack" and turn.request_id == response.headers["x-request-id"]

    streamed = await caller.post(
        "/v1/chat", json={"user_id": "u", "message": "stream: 3", "stream": True}
    )
    assert streamed.text.count("event: delta") == 3
    client = sdk(caller)
    await client.chat.completions.create(model="controlled", messages=MESSAGES)  # type: ignore[arg-type]
    await caller.post("/v1/embeddings", json={"model": "controlled", "input": ["a", "b"]})
    stream_turn, chat, embedded = (await usage_of(caller, 4))[1:]
    assert stream_turn.route == "/v1/chat" and stream_turn.execution_ms >= 150  # 3 x 0.05 s
    assert stream_turn.output_tokens == 1  # "streamed"
    assert chat.route == "/v1/chat/completions" and chat.execution_ms >= 50  # slept 0.05 s
    assert embedded.worker == "embed" and embedded.route == "/v1/embeddings"
    assert embedded.cost_usd == pytest.approx(PRICES["embed"] * embedded.execution_ms / 1000)
    used = await usage_of(caller)
    assert await spent(api, key_id) == pytest.approx(sum(row.cost_usd for row in used))


async def test_usage_is_read_back_grouped_with_totals_for_the_tenant_only(api):
    caller, key_id = await tenant_api(api)
    for message in ("one", "two"):
        await caller.post("/v1/chat", json={"user_id": "u", "message": message})
    await caller.post("/v1/embeddings", json={"model": "controlled", "input": "x"})
    used = await usage_of(caller, 3)

    report = (await caller.get("/v1/usage", params={"group_by": "route"})).json()
    assert [(g["group"], g["requests"]) for g in report["groups"]] == [
        ("/v1/chat", 2),
        ("/v1/embeddings", 1),
    ]
    assert report["total"]["requests"] == 3
    assert report["total"]["cost_usd"] == pytest.approx(sum(row.cost_usd for row in used))
    assert report["total"]["input_tokens"] == sum(row.input_tokens or 0 for row in used)
    by_day = (await caller.get("/v1/usage")).json()
    assert by_day["group_by"] == "day" and len(by_day["groups"]) == 1
    by_key = (await caller.get("/v1/usage", params={"group_by": "key"})).json()
    assert [g["group"] for g in by_key["groups"]] == [str(key_id)]

    stranger, _ = await tenant_api(api)
    theirs = (await stranger.get("/v1/usage", params={"group_by": "model"})).json()
    assert theirs["groups"] == [] and theirs["total"]["requests"] == 0

    span = {"from": "2019-12-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"}
    earlier = (await caller.get("/v1/usage", params=span)).json()
    assert (earlier["from"], earlier["to"]) == ("2019-12-01T00:00:00Z", "2020-01-01T00:00:00Z")
    assert earlier["total"]["requests"] == 0


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"from": "2026-12-05T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "from"),
        ({"from": "yesterday"}, "from"),
    ],
)
async def test_usage_refuses_a_bad_query_naming_the_field(api, params, param):
    response = await api.get("/v1/usage", params=params)
    assert assert_error(response, 422, "validation_error")["param"] == param


async def test_a_key_past_its_budget_is_refused_before_any_worker(api):
    caller, key_id = await tenant_api(api, budget=0.0001)  # about 10 ms of the llm's GPU
    client = sdk(caller)
    await client.chat.completions.create(model="controlled", messages=MESSAGES)  # type: ignore[arg-type]
    await usage_of(caller, 1)
    assert await spent(api, key_id) > 0.0001
    jobs = api.app.state.backend.jobs
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model="controlled", messages=MESSAGES)  # type: ignore[arg-type]
    assert refused.value.code == "insufficient_quota"
    assert "monthly budget of this API key ($0.00) is spent" in refused.value.message
    assert api.app.state.backend.jobs == jobs  # nothing reached a worker
    # What reaches no worker is still served: the usage, the conversations.
    assert (await caller.get("/v1/usage")).status_code == 200
    assert (await caller.get("/v1/users/u/conversations")).status_code == 200


async def test_a_tenant_past_its_budget_is_refused_and_alerted_once(api):
    caller, key_id = await tenant_api(api)
    async with api.app.state.sessionmaker() as session:
        tenant = await session.scalar(select(ApiKey.tenant).where(ApiKey.id == key_id))
    secret = (await caller.post("/v1/tenant/webhook-secret")).json()["webhook_secret"]
    server, hook = receiver(200)
    try:
        url = f"http://127.0.0.1:{server.server_port}/budget"
        await set_tenant_budget(api.app.state.engine, tenant, 0.0006, 50, url)
        client = sdk(caller)
        for expected in range(1, 10):
            try:
                await client.chat.completions.create(model="controlled", messages=MESSAGES)  # type: ignore[arg-type]
            except openai.RateLimitError as refused:
                assert refused.code == "insufficient_quota"
                assert "monthly budget of this tenant ($0.00) is spent" in refused.message
                break
            await usage_of(caller, expected)
        else:
            pytest.fail("the tenant's budget was never reached")
        for _ in range(50):  # the alert is sent after the usage is written
            if hook.received:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)  # time for a second alert, which must not come
    finally:
        server.shutdown()
    [(headers, body)] = hook.received
    ts = int(headers["X-Tandem-Signature"].split(",")[0].removeprefix("t="))
    assert headers["X-Tandem-Signature"] == deployment_webhooks.signature(secret, body, ts)
    alert = json.loads(body)
    assert alert["event"] == "budget.alert" and alert["tenant"] == tenant
    assert alert["monthly_usd"] == 0.0006 and alert["alert_percent"] == 50
    assert alert["spent_usd"] >= 0.0003


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--tenant", "t", "--monthly-usd", "-5"], "'-5' is not an amount of US dollars"),
        (["--tenant", "t", "--monthly-usd", "lots"], "'lots' is not an amount of US dollars"),
        (["--key", "not-a-uuid", "--monthly-usd", "5"], "--key: invalid UUID value"),
        (["--monthly-usd", "5"], "one of the arguments --tenant --key is required"),
    ],
)
def test_budget_set_refuses_what_is_no_budget(args, words, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["budget", "set", *args])
    assert exited.value.code == 2
    assert words in capsys.readouterr().err


def printed(result) -> list[str]:
    """What a command printed, less the log lines (JSON) of the migrations it runs first."""
    return [line for line in result.stdout.splitlines() if not line.startswith("{")]


async def test_the_operator_reads_every_tenants_usage_and_sets_budgets(api, database_url):
    caller, key_id = await tenant_api(api)
    await caller.post("/v1/chat", json={"user_id": "u", "message": "for the operator"})
    async with api.app.state.sessionmaker() as session:
        tenant = await session.scalar(select(ApiKey.tenant).where(ApiKey.id == key_id))
    env = {"DATABASE_URL": database_url}
    table = await asyncio.to_thread(run_cli, "usage", "--since", "1d", **env)
    assert table.returncode == 0, table.stderr
    lines = printed(table)
    assert lines[0].startswith("usage from ") and lines[1].split()[:2] == ["tenant", "requests"]
    assert any(line.startswith(tenant) for line in lines) and lines[-1].startswith("total")
    mine = await asyncio.to_thread(run_cli, "usage", "--tenant", tenant, **env)
    assert printed(mine)[2].split()[:2] == ["controlled", "1"]  # by model

    made = await asyncio.to_thread(
        run_cli, "budget", "set", "--tenant", tenant, "--monthly-usd", "12.5", **env
    )
    assert printed(made) == [f"tenant {tenant!r}: $12.50 a month (UTC months)"]
    keyed = await asyncio.to_thread(
        run_cli, "budget", "set", "--key", str(key_id), "--monthly-usd", "2", **env
    )
    assert keyed.returncode == 0, keyed.stderr
    listed = "\n".join(printed(await asyncio.to_thread(run_cli, "budget", "list", **env)))
    assert f"{tenant!r} tenant: $" in listed and " of $12.50 this month" in listed
    assert f"key {key_id} ('usage')" in listed and " of $2.00 this month" in listed
    unknown = await asyncio.to_thread(
        run_cli, "budget", "set", "--key", str(uuid.uuid4()), "--monthly-usd", "2", **env
    )
    assert unknown.returncode == 1 and "no API key" in unknown.stderr
