"""Listing and deleting what a tenant owns: documents, images and jobs a page at a time
(newest first, cursors that neither repeat nor skip), a conversation deleted, a user's
conversations erased; a 204 carries no body, and a trailing slash is no redirect."""

import io

import pytest
from PIL import Image

from app.services.api_keys import create_api_key
from tests.conftest import Api


@pytest.fixture(scope="module")
def api(served_api) -> Api:
    """Over HTTP: the CLIP worker downloads an uploaded image from the API's signed URL."""
    return served_api


@pytest.fixture(scope="module")
async def other(api) -> Api:
    key = await create_api_key(api.app.state.sessionmaker, "other", tenant="listing-other")
    return Api(api.app, api.client, key)


async def pages(api, path: str, **params) -> list[list[dict]]:
    found, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = (await api.get(path, params=query)).json()
        found.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def test_documents_come_a_page_at_a_time_newest_first(api, other):
    made = []
    for n in range(5):
        body = {"source_id": f"list-{n}", "text": f"Listed document {n}."}
        made.append((await api.post("/v1/documents", json=body)).json()["id"])
    await api.post("/v1/documents", json={"source_id": "elsewhere", "text": "Not listed."})

    listed = await pages(api, "/v1/documents", limit=2, source_id_prefix="list-")
    assert [len(page) for page in listed] == [2, 2, 1]
    ids = [item["id"] for page in listed for item in page]
    assert ids == made[::-1]  # newest first, each once
    assert (await other.get("/v1/documents")).json() == {"items": [], "next_cursor": None}
    bad = await api.get("/v1/documents", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and "cursor" in bad.json()["error"]["message"]


async def test_images_and_jobs_are_listed_too(api):
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(png, "PNG")
    image = await api.post("/v1/images", files={"file": ("green.png", png.getvalue(), "image/png")})
    assert image.status_code == 201, image.text
    [listed] = await pages(api, "/v1/images")
    assert [item["id"] for item in listed] == [image.json()["id"]]

    jobs = [
        (await api.post("/v1/jobs", json={"kind": "embed", "texts": [f"t{n}"]})).json()["job_id"]
        for n in range(3)
    ]
    listed_jobs = await pages(api, "/v1/jobs", limit=2)
    assert [job["job_id"] for page in listed_jobs for job in page][:3] == jobs[::-1]
    assert all("result" not in job for page in listed_jobs for job in page)  # summaries
    failed = (await api.get("/v1/jobs", params={"status": "failed"})).json()["items"]
    assert all(job["status"] == "failed" for job in failed)


async def test_a_conversation_is_deleted_and_a_users_are_erased(api, other):
    async def converse(client, user: str) -> str:
        return (await client.post("/v1/chat", json={"user_id": user, "message": "hi"})).json()[
            "conversation_id"
        ]

    one = await converse(api, "erin")
    two = await converse(api, "erin")
    theirs = await converse(other, "erin")  # another tenant's user of the same name

    assert (
        await other.client.delete(f"/v1/conversations/{one}", headers=other.auth)
    ).status_code == 404
    deleted = await api.client.delete(f"/v1/conversations/{one}", headers=api.auth)
    assert deleted.status_code == 204
    assert deleted.content == b"" and "content-type" not in deleted.headers
    assert (await api.get(f"/v1/conversations/{one}")).status_code == 404

    erased = await api.client.delete("/v1/users/erin", headers=api.auth)
    assert erased.status_code == 204 and erased.content == b""
    assert (await api.get(f"/v1/conversations/{two}")).status_code == 404
    assert (await api.get("/v1/users/erin/conversations")).json()["conversations"] == []
    assert (await other.get(f"/v1/conversations/{theirs}")).status_code == 200  # not theirs
    again = await api.client.delete("/v1/users/erin", headers=api.auth)
    assert again.status_code == 204  # nothing left to erase is fine


async def test_a_trailing_slash_is_not_found_not_redirected(api):
    response = await api.get("/v1/documents/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
