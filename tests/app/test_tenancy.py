"""Tenants: a key reads and writes its tenant's conversations, documents, images, jobs and
search results, and another tenant's ids answer 404; keys are listed and revoked from the
command line; and every `/v1` route refuses a request without a key."""

import asyncio
import re
import uuid

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text

from app.services.api_keys import create_api_key
from tests.app.test_cli import run_cli
from tests.conftest import Api

UNKEYED = {"/v1/objects/{key:path}"}  # a signed URL is its own credential


async def test_every_v1_route_requires_a_key(api):
    """Auth is the routers' default: a route added without thinking of it still refuses."""
    routes = [
        (method, route.path)
        for route in api.app.routes
        if isinstance(route, APIRoute) and route.path.startswith("/v1")
        for method in route.methods
    ]
    assert len(routes) >= 12
    for method, path in routes:
        url = re.sub(r"\{\w*id(:uuid)?\}", str(uuid.uuid4()), path)
        url = re.sub(r"\{[\w:]+\}", "x", url)
        answered = await api.client.request(method, url, json={})  # no Authorization
        if path in UNKEYED:
            assert answered.status_code != 401, path
        else:
            assert answered.status_code == 401, (method, path, answered.text)
            assert answered.json()["error"]["code"] == "unauthorized"


@pytest.fixture(scope="module")
async def other(api) -> Api:
    """A key of another tenant, on the same API."""
    key = await create_api_key(api.app.state.sessionmaker, "other", tenant="other-tenant")
    return Api(api.app, api.client, key)


async def test_another_tenants_data_is_not_found(api, other):
    chat = (await api.post("/v1/chat", json={"user_id": "ann", "message": "secret plan"})).json()
    conversation = chat["conversation_id"]
    document = (
        await api.post("/v1/documents", json={"source_id": "plan", "text": "The secret plan."})
    ).json()
    job = (await api.post("/v1/jobs", json={"kind": "embed", "texts": ["a"]})).json()

    for path in (
        f"/v1/conversations/{conversation}",
        f"/v1/documents/{document['id']}",
        f"/v1/jobs/{job['job_id']}",
    ):
        assert (await other.get(path)).status_code == 404, path
        assert (await api.get(path)).status_code == 200, path
    follow_up = {"user_id": "ann", "message": "more", "conversation_id": conversation}
    assert (await other.post("/v1/chat", json=follow_up)).status_code == 404
    listed = (await other.get("/v1/users/ann/conversations")).json()["conversations"]
    assert listed == []
    deleted = await other.client.delete(f"/v1/documents/{document['id']}", headers=other.auth)
    assert deleted.status_code == 404
    assert (await api.get(f"/v1/documents/{document['id']}")).status_code == 200  # still there
    hits = (await other.get("/v1/search", params={"q": "secret plan"})).json()["hits"]
    assert hits == []
    grounded = await other.post(
        "/v1/chat", json={"user_id": "bob", "message": "secret plan", "rag": {"k": 4}}
    )
    assert grounded.json()["sources"] == []  # no other tenant's chunk grounds an answer


async def test_a_source_id_is_each_tenants_own(api, other):
    mine = await api.post("/v1/documents", json={"source_id": "shared", "text": "Mine."})
    theirs = await other.post("/v1/documents", json={"source_id": "shared", "text": "Theirs."})
    assert mine.status_code == theirs.status_code == 201  # no replacement across tenants
    assert mine.json()["id"] != theirs.json()["id"]
    hits = (await other.get("/v1/search", params={"q": "Mine"})).json()["hits"]
    assert {hit["document_id"] for hit in hits} == {theirs.json()["id"]}


async def test_keys_of_one_tenant_share_its_data(api):
    tenant = (await api.get("/v1/users/x/conversations")).status_code  # the key works
    assert tenant == 200
    async with api.app.state.sessionmaker() as session:
        mine = await session.scalar(
            text("SELECT tenant FROM api_keys WHERE name = 'tests' ORDER BY created_at LIMIT 1")
        )
    second = Api(api.app, api.client, await create_api_key(api.app.state.sessionmaker, "2", mine))
    document = (await api.post("/v1/documents", json={"source_id": "team", "text": "Ours."})).json()
    assert (await second.get(f"/v1/documents/{document['id']}")).status_code == 200


async def test_keys_are_listed_and_revoked_from_the_command_line(api):
    url = api.app.state.settings.database_url.get_secret_value()
    created = await asyncio.to_thread(
        run_cli, "create-api-key", "--name", "ops", "--tenant", "acme", DATABASE_URL=url
    )
    assert created.returncode == 0, created.stderr
    assert "in tenant 'acme'" in created.stdout
    key = created.stdout.strip().splitlines()[-1]
    listed = await asyncio.to_thread(run_cli, "list-api-keys", DATABASE_URL=url)
    [line] = [line for line in listed.stdout.splitlines() if "'ops'" in line]
    assert "tenant 'acme'" in line and line.endswith("active") and key not in listed.stdout
    key_id = line.split()[0]
    acme = Api(api.app, api.client, key)
    assert (await acme.get("/v1/users/x/conversations")).status_code == 200

    revoked = await asyncio.to_thread(run_cli, "revoke-api-key", key_id, DATABASE_URL=url)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert (await acme.get("/v1/users/x/conversations")).status_code == 401
    again = await asyncio.to_thread(run_cli, "revoke-api-key", key_id, DATABASE_URL=url)
    assert again.returncode != 0 and "no active API key" in again.stderr
    assert "revoked" in (await asyncio.to_thread(run_cli, "list-api-keys", DATABASE_URL=url)).stdout
