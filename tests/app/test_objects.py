"""`GET /v1/objects/{key}`: local uploads served to holders of a signed URL, and nobody else."""

from urllib.parse import urlsplit

import pytest

from tests.conftest import controlled_backend, make_settings, start_api

PNG = b"\x89PNG\r\n\x1a\n-not-really"


@pytest.fixture(scope="module")
async def api(database_url, tmp_path_factory):
    settings = make_settings(
        database_url, storage_dir=tmp_path_factory.mktemp("objects"), public_url="http://api"
    )
    async for started in start_api(settings, controlled_backend()):
        started.app.state.storage.put("images/cat.png", PNG, "image/png")
        yield started


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_a_signed_url_serves_the_object_without_a_key(api):
    url = api.app.state.storage.signed_url("images/cat.png", ttl_s=60)
    response = await api.client.get(path_of(url))  # no Authorization header
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"


async def test_a_tampered_or_expired_url_is_403(api):
    url = api.app.state.storage.signed_url("images/cat.png", ttl_s=60)
    other = path_of(url).replace("images/cat.png", "images/dog.png")
    assert (await api.client.get(other)).status_code == 403
    expired = api.app.state.storage.signed_url("images/cat.png", ttl_s=-10)
    response = await api.client.get(path_of(expired))
    assert response.status_code == 403
    assert "expired" in response.json()["error"]["message"]
    forged = path_of(url).split("signature=")[0] + "signature=" + "é" * 64  # not a hex digest
    assert (await api.client.get(forged)).status_code == 403


async def test_a_signed_url_to_a_missing_object_is_404(api):
    url = api.app.state.storage.signed_url("images/gone.png", ttl_s=60)
    assert (await api.client.get(path_of(url))).status_code == 404


@pytest.mark.parametrize(
    "query", ["", "?expires=1", "?signature=" + "0" * 64, "?expires=x&signature=" + "0" * 64]
)
async def test_a_url_without_a_valid_signature_is_422(api, query):
    assert (await api.client.get(f"/v1/objects/images/cat.png{query}")).status_code == 422


async def test_a_signed_upload_url_stores_the_body_once_signed_for_it(api):
    storage = api.app.state.storage
    url = storage.signed_upload_url("images/new.png", 60, "image/png")
    response = await api.client.put(
        path_of(url), content=PNG, headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 204
    assert storage.get("images/new.png") == PNG
    read = storage.signed_url("images/new.png", ttl_s=60)
    assert (await api.client.put(path_of(read), content=b"x")).status_code == 403  # reads only
    assert (await api.client.get(path_of(url))).status_code == 403  # an upload URL reads nothing
    other = path_of(url).replace("images/new.png", "images/cat.png")
    assert (await api.client.put(other, content=b"x")).status_code == 403
    assert storage.get("images/cat.png") == PNG
    expired = storage.signed_upload_url("images/late.png", -10, "image/png")
    assert (await api.client.put(path_of(expired), content=PNG)).status_code == 403


async def test_an_upload_takes_the_upload_limit_not_the_json_limit(api):
    settings = api.app.state.settings
    storage = api.app.state.storage
    big = b"\0" * (settings.max_body_bytes + 1)  # over the JSON body limit, under the upload one
    url = storage.signed_upload_url("images/big.png", 60, "image/png")
    assert (await api.client.put(path_of(url), content=big)).status_code == 204
    huge = b"\0" * (settings.max_upload_bytes + 1)
    response = await api.client.put(path_of(url), content=huge)
    assert response.status_code == 413
    assert storage.get("images/big.png") == big
