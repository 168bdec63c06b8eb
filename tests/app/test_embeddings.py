"""`POST /v1/embeddings`: HMAC-signed requests to the real CLIP worker (a tiny random one,
in-process), images fetched from a local web server, and bad input."""

import functools
import math
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from tests.conftest import make_settings, start_api


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def image_url(tmp_path_factory):
    """The URL of a PNG on a local web server (the workers allow loopback in tests)."""
    root = tmp_path_factory.mktemp("site")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(root / "red.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("1", (7000, 6000)).save(root / "huge.png")  # 42 M pixels: over the 40 M limit
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/red.png"
    server.shutdown()


async def test_text_embedding_is_signed_and_verified(api):
    response = await api.post("/v1/embeddings", json={"text": "a cat on a mat"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["dim"] == len(body["embedding"]) == 512
    )  # the tiny CLIP projects to CLIP-B/32's size
    assert body["model"] == "tandem-tiny-random-clip-512d"
    assert body["normalized"] is True
    assert math.isclose(math.sqrt(sum(v * v for v in body["embedding"])), 1.0, rel_tol=1e-5)
    assert set(body["timings"]) == {"download_ms", "inference_ms", "total_ms"}


async def test_image_url_and_unnormalized(api, image_url):
    response = await api.post("/v1/embeddings", json={"image_url": image_url, "normalize": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["normalized"] is False
    assert body["dim"] == len(body["embedding"]) == 512
    assert not math.isclose(math.sqrt(sum(v * v for v in body["embedding"])), 1.0, rel_tol=1e-3)


async def test_same_input_same_embedding(api):
    first = (await api.post("/v1/embeddings", json={"text": "a red car"})).json()
    second = (await api.post("/v1/embeddings", json={"text": "a red car"})).json()
    other = (await api.post("/v1/embeddings", json={"text": "a blue sky"})).json()
    assert first["embedding"] == second["embedding"] != other["embedding"]


async def test_worker_with_another_secret_refuses(database_url, local_backend):
    settings = make_settings(database_url, embedding_hmac_secret="not-the-workers-secret")
    async for api in start_api(settings, local_backend):
        response = await api.post("/v1/embeddings", json={"text": "x"})
        assert response.status_code == 502
        assert "Authentication failed" in response.json()["error"]["message"]


async def test_unsigned_request_is_refused_by_a_signing_worker(database_url, local_backend):
    async for api in start_api(make_settings(database_url), local_backend):  # no secret: unsigned
        response = await api.post("/v1/embeddings", json={"text": "x"})
        assert response.status_code == 502
        assert "Authentication failed" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("name", "status", "code", "words"),
    [
        ("red.png.missing", 422, "invalid_input", "answered HTTP 404"),
        ("broken.png", 422, "invalid_input", "cannot decode the image"),
        ("huge.png", 413, "input_too_large", "7000x6000 pixels is over the limit"),
    ],
)
async def test_an_image_the_worker_refuses_is_the_clients_to_fix(
    api, image_url, name, status, code, words
):
    """A refusal of the client's input is no outage: 422 (413 over a limit), never a 502."""
    url = image_url.replace("red.png", name)
    response = await api.post("/v1/embeddings", json={"image_url": url})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert words in response.json()["error"]["message"]


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
