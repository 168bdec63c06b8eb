"""`POST /v1/embeddings` with the CLIP model: HMAC-signed requests to the real CLIP worker (a
tiny random one, in-process), texts and images in one input (images from a local web server
and as data URLs), and bad input. (The text embedding model, through the embed worker's vLLM
serving, and the `openai` client: tests/e2e/test_openai_api.py.)"""

import base64
import functools
import io
import math
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

CLIP = "openai/clip-vit-base-patch32"  # the API's CLIP_MODEL (the worker is a tiny stand-in)


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


def png_data_url(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def embed(api, input_, **fields):
    return await api.post("/v1/embeddings", json={"model": CLIP, "input": input_, **fields})


def vectors(response) -> list[list[float]]:
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [item["index"] for item in data] == list(range(len(data)))
    return [item["embedding"] for item in data]


async def test_texts_and_images_in_one_input_in_openais_shape(api, image_url):
    items = ["a cat on a mat", image_url, png_data_url((0, 90, 200)), "a red car"]
    response = await embed(api, items)
    body = response.json()
    assert body["object"] == "list" and body["model"] == "tandem-tiny-random-clip-512d"
    found = vectors(response)
    assert [len(v) for v in found] == [512] * 4  # the tiny CLIP projects to CLIP-B/32's size
    assert all(math.isclose(np.linalg.norm(v), 1.0, rel_tol=1e-5) for v in found)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    # Each item's vector is the one it gets alone: the order survives the split by kind.
    for item, vector in zip(items, found, strict=True):
        [alone] = vectors(await embed(api, item))
        assert np.allclose(alone, vector, atol=1e-5)


async def test_an_image_has_no_tokens_and_same_input_same_embedding(api):
    image = png_data_url((10, 200, 10))
    first, second = await embed(api, image), await embed(api, [image])
    assert first.json()["usage"]["prompt_tokens"] == 0
    assert vectors(first) == vectors(second) != vectors(await embed(api, "a blue sky"))


async def test_base64_is_little_endian_float32(api):
    [floats] = vectors(await embed(api, "a red car"))
    [encoded] = vectors(await embed(api, "a red car", encoding_format="base64"))
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert np.allclose(decoded, floats, atol=1e-6)


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
    response = await embed(api, ["a text", image_url.replace("red.png", name)])
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert words in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"input": ""}, "input", "non-empty string"),
        ({"input": []}, "input", "non-empty string"),
        ({"input": [[1, 2, 3]]}, "input", "non-empty string"),
        ({"input": ["x", ""]}, "input", "non-empty string"),
        ({"input": "data:text/plain;base64,eA=="}, "input", "data:image/<type>;base64"),
        ({"input": "data:image/png;base64,"}, "input", "data:image/<type>;base64"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
        ({"input": "x", "dimensions": 64}, "dimensions", "have 512 dimensions"),
        ({"input": "x", "normalize": False}, "normalize", "Extra inputs"),
        ({}, "input", "non-empty string"),
    ],
)
async def test_bad_clip_requests_are_400_naming_the_field(api, fields, param, words):
    response = await api.post("/v1/embeddings", json={"model": CLIP, **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error")
    assert words in error["message"]


async def test_too_many_items_is_413(api):
    response = await embed(api, ["x"] * 33)  # the worker's MAX_BATCH is 32
    assert response.status_code == 413, response.text
    assert "the limit is 32" in response.json()["error"]["message"]
