"""`POST /v1/embeddings`: HMAC-signed requests to the embedding worker, and bad input."""

import math

import pytest

import gpu_worker.dev.handler as dev_worker
from gpu_worker.common.settings import WorkerSettings
from tests.conftest import make_settings, start_api


@pytest.fixture(scope="module")
async def signed_api(database_url):
    async for api in start_api(make_settings(database_url, embedding_hmac_secret="s3cret")):
        yield api


@pytest.fixture
def worker_secret(monkeypatch):
    """Set the in-process worker's HMAC secret."""

    def set_secret(secret: str | None) -> None:
        monkeypatch.setattr(dev_worker, "settings", WorkerSettings(embedding_hmac_secret=secret))

    return set_secret


async def test_text_embedding_is_signed_and_verified(signed_api, worker_secret):
    worker_secret("s3cret")
    response = await signed_api.post("/v1/embeddings", json={"text": "a cat on a mat"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dim"] == len(body["embedding"]) == 512
    assert body["normalized"] is True
    assert math.isclose(math.sqrt(sum(v * v for v in body["embedding"])), 1.0, rel_tol=1e-6)
    assert set(body["timings"]) == {"download_ms", "inference_ms", "total_ms"}


async def test_image_url_and_unnormalized(signed_api, worker_secret):
    worker_secret("s3cret")
    response = await signed_api.post(
        "/v1/embeddings", json={"image_url": "https://example.com/cat.png", "normalize": False}
    )
    assert response.status_code == 200, response.text
    assert response.json()["normalized"] is False


async def test_same_input_same_embedding(signed_api, worker_secret):
    worker_secret("s3cret")
    first = (await signed_api.post("/v1/embeddings", json={"text": "same"})).json()
    second = (await signed_api.post("/v1/embeddings", json={"text": "same"})).json()
    other = (await signed_api.post("/v1/embeddings", json={"text": "other"})).json()
    assert first["embedding"] == second["embedding"] != other["embedding"]


async def test_worker_with_another_secret_refuses(signed_api, worker_secret):
    worker_secret("not-the-same")
    response = await signed_api.post("/v1/embeddings", json={"text": "x"})
    assert response.status_code == 502
    assert "Authentication failed" in response.json()["error"]["message"]


async def test_unsigned_request_is_refused_by_a_signing_worker(api, worker_secret):
    worker_secret("s3cret")  # the `api` fixture has no secret, so it sends no signature
    response = await api.post("/v1/embeddings", json={"text": "x"})
    assert response.status_code == 502
    assert "Authentication failed" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "exactly one"),
        ({"text": "x", "image_url": "https://example.com/a.png"}, "exactly one"),
        ({"text": ""}, "text"),
        ({"image_url": "ftp://example.com/a.png"}, "image_url"),
        ({"image_url": "file:///etc/passwd"}, "image_url"),
        ({"image_url": "not a url"}, "image_url"),
        ({"text": "x", "normalize": "sometimes"}, "normalize"),
    ],
)
async def test_bad_embedding_requests_are_422(api, body, words):
    response = await api.post("/v1/embeddings", json=body)
    assert response.status_code == 422
    assert words in response.json()["error"]["message"]
