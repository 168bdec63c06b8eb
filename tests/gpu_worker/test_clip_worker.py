"""The CLIP worker's handler with a tiny random CLIP: embeddings, batches, HMAC, bad input, and
safe image fetching against a local HTTP server."""

import base64
import contextlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

import gpu_worker.clip.handler as clip
from gpu_worker.clip.settings import ClipSettings
from gpu_worker.clip.tiny import build_tiny_clip
from gpu_worker.common.signing import canonical, sign

SECRET = "clip-secret"


def png(size=(40, 30), color=(200, 30, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else 0).save(buffer, format="PNG")
    return buffer.getvalue()


CAT = png()
BOMB = png(size=(12_000, 12_000), mode="1")  # a few KB on disk, 144 megapixels decoded


class ImageSite(BaseHTTPRequestHandler):
    """A local web server with one route per case of the safe-fetch matrix."""

    def do_GET(self) -> None:
        route = self.path.split("?")[0]
        if route in ("/cat.png", "/v1/objects/cat.png"):
            self._send(200, "image/png", CAT)
        elif route == "/bomb.png":
            self._send(200, "image/png", BOMB)
        elif route == "/broken.png":
            self._send(200, "image/png", b"not a png at all")
        elif route == "/page.html":
            self._send(200, "text/html", b"<html></html>")
        elif route == "/huge.png":
            self._send(200, "image/png", b"\0" * 3000)
        elif route == "/huge-chunked.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()  # no Content-Length: the cap must hold while streaming
            for _ in range(10):
                self.wfile.write(b"\0" * 500)
        elif route == "/to-private":
            self.send_response(302)
            self.send_header("Location", "http://10.1.2.3/cat.png")
            self.end_headers()
        elif route == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
        elif route in ("/to-cat", "/v1/objects/away"):
            self.send_response(302)
            self.send_header("Location", "/cat.png")
            self.end_headers()
        elif route == "/slow.png":
            time.sleep(2)
            self._send(200, "image/png", CAT)
        else:
            self._send(404, "text/plain", b"missing")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)  # the client may have given up first: the slow-server case

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageSite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def tiny_clip_worker(tmp_path_factory) -> clip.ClipWorker:
    model = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
    return clip.ClipWorker(ClipSettings(model_name=str(model)))


@pytest.fixture
def worker(monkeypatch, tiny_clip_worker):
    """Serve jobs with the tiny CLIP; loopback allowed so the local site can be reached."""

    def configure(**overrides) -> ClipSettings:
        values = {
            "model_name": tiny_clip_worker.settings.model_name,
            "fetch_allowed_networks": ["127.0.0.0/8"],
            "max_image_bytes": 2048,
            "fetch_read_timeout_seconds": 0.5,
        } | overrides
        settings = ClipSettings(**values)
        monkeypatch.setattr(tiny_clip_worker, "settings", settings)
        return settings

    monkeypatch.setattr(clip, "worker", tiny_clip_worker)
    configure()
    return configure


async def embed(job_input: dict) -> dict:
    return await clip.worker.handle({"id": "job-7", "input": job_input})


async def test_text_embedding(worker):
    result = await embed({"text": "a photo of a cat", "request_id": "r-1"})
    assert result["request_id"] == "r-1"
    assert result["dim"] == len(result["embedding"]) == 512
    assert result["normalized"] is True
    assert np.isclose(np.linalg.norm(result["embedding"]), 1.0, atol=1e-5)
    assert set(result["timings"]) == {"download_ms", "inference_ms", "total_ms"}


async def test_image_by_url_and_base64_agree(worker, site):
    by_url = await embed({"image_url": f"{site}/cat.png"})
    by_data = await embed({"image_base64": base64.b64encode(CAT).decode()})
    assert np.allclose(by_url["embedding"], by_data["embedding"], atol=1e-5)
    assert by_url["timings"]["download_ms"] > 0


async def test_batches_match_single_calls(worker, site):
    texts = ["a red car", "the blue sky", "a dog on the mat"]
    batch = await embed({"texts": texts, "normalize": False})
    assert batch["normalized"] is False
    assert len(batch["embeddings"]) == 3
    single = await embed({"text": texts[1], "normalize": False})
    assert np.allclose(batch["embeddings"][1], single["embedding"], atol=1e-4)
    images = await embed({"images": [f"{site}/cat.png", base64.b64encode(CAT).decode()]})
    assert np.allclose(images["embeddings"][0], images["embeddings"][1], atol=1e-5)
    # The tokens read, padding not counted (each text is its words plus start and end).
    tokenizer = clip.worker.embedder.tokenizer
    assert batch["usage"]["prompt_tokens"] == sum(len(tokenizer(t)["input_ids"]) for t in texts)
    assert images["usage"]["prompt_tokens"] == 0


@pytest.mark.parametrize(
    ("job_input", "words"),
    [
        ({}, "give exactly one of"),
        ({"text": "x", "image_url": "https://example.com/a.png"}, "give exactly one of"),
        ({"text": ""}, "non-empty strings"),
        ({"texts": []}, "non-empty list"),
        ({"texts": "not a list"}, "non-empty list"),
        ({"texts": ["a"] * 33}, "the limit is 32"),
        ({"texts": ["ok", 5]}, "non-empty strings"),
        ({"text": "x" * 2001}, "longer than 2000"),
        ({"image_base64": "!!!not base64!!!"}, "not valid base64"),
        ({"image_base64": "https://example.com/a.png"}, "send it as image_url"),
        ({"image_url": "ftp://example.com/a.png"}, "http or https"),
        ({"image_base64": base64.b64encode(b"plain text").decode()}, "cannot decode"),
    ],
)
async def test_bad_input_is_an_error_with_the_request_id(worker, job_input, words):
    result = await embed(job_input)
    assert words in result["error"]
    assert result["request_id"] == "job-7"
    assert "embedding" not in result


async def test_not_an_object():
    result = await clip.handle({"id": "job-8", "input": ["text"]})
    assert result == {"error": "[invalid_input] input must be an object", "request_id": "job-8"}


@pytest.mark.parametrize(
    ("path", "fetched"),
    [
        ("/v1/objects/cat.png?expires=1&signature=x", True),  # the API's own signed object
        ("/cat.png", False),  # the same host, another path
        ("/v1/objects/../cat.png", False),  # climbing out of the object path
        ("/v1/objects/%2e%2e/cat.png", False),
        ("/v1/objects/away", False),  # a redirect out of it is checked again
    ],
)
async def test_only_the_apis_own_object_path_may_be_on_loopback(worker, site, path, fetched):
    """Local mode: the worker fetches the API's uploads from loopback, and nothing else there
    (no other path, and no other port: the prefix holds the API's)."""
    worker(fetch_allowed_networks=[], fetch_allowed_prefixes=[f"{site}/v1/objects/"])
    result = await embed({"image_url": site + path})
    assert ("embedding" in result) == fetched, result
    if not fetched:
        assert "non-public address" in result["error"]
    other_port = site.rsplit(":", 1)[0] + ":1"
    result = await embed({"image_url": other_port + "/v1/objects/cat.png"})
    assert "non-public address" in result["error"]


@pytest.mark.parametrize(
    ("path", "words", "allowed"),
    [
        ("/huge.png", "larger than 2048 bytes", ["127.0.0.0/8"]),
        ("/huge-chunked.png", "larger than 2048 bytes", ["127.0.0.0/8"]),
        ("/page.html", "text/html, not an image", ["127.0.0.0/8"]),
        ("/to-private", "non-public address", ["127.0.0.0/8"]),
        ("/to-metadata", "non-public address", ["127.0.0.0/8"]),
        ("/slow.png", "timed out", ["127.0.0.0/8"]),
        ("/bomb.png", "over the limit", ["127.0.0.0/8"]),
        ("/broken.png", "cannot decode", ["127.0.0.0/8"]),
        ("/missing.png", "HTTP 404", ["127.0.0.0/8"]),
        ("/cat.png", "non-public address", []),  # loopback itself, with no allow-list
    ],
)
async def test_safe_fetch_matrix(worker, site, path, words, allowed):
    worker(fetch_allowed_networks=allowed, max_image_bytes=2048 if path != "/bomb.png" else 10**7)
    result = await embed({"image_url": site + path})
    assert words in result["error"]


async def test_redirect_to_a_public_path_is_followed(worker, site):
    assert "embedding" in await embed({"image_url": f"{site}/to-cat"})


async def test_the_checked_address_is_the_one_connected_to(worker, site, monkeypatch):
    """DNS rebinding: the name answers a checked address first and a private one after; the
    download must go to the first, so the second answer is never used."""
    answers = iter(["127.0.0.1"])
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "images.test":
            address = next(answers, "10.255.255.1")  # what a rebinding server answers next
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = site.replace("127.0.0.1", "images.test") + "/cat.png"
    assert "embedding" in await embed({"image_url": url})


async def test_unresolvable_host(worker):
    result = await embed({"image_url": "http://no-such-host.invalid/cat.png"})
    assert "cannot resolve" in result["error"]


def signed(job_input: dict, secret: str = SECRET, skew: int = 0) -> dict:
    """`job_input` signed now (plus `skew` seconds): call it inside the test, not at collection."""
    ts = int(time.time()) + skew
    return {**job_input, "auth": {"ts": ts, "sig": sign(secret, canonical(job_input), ts)}}


@pytest.mark.parametrize(
    ("job_input", "secret", "skew", "ok"),
    [
        ({"text": "a cat"}, SECRET, 0, True),
        ({"texts": ["a cat", "a dog"]}, SECRET, 0, True),
        ({"text": "a cat"}, "wrong", 0, False),
        ({"text": "a cat"}, SECRET, -310, False),
        ({"text": "a cat"}, SECRET, 310, False),
        ({"text": "a cat"}, None, 0, False),
    ],
    ids=["valid", "valid-batch", "wrong-secret", "expired", "future", "missing"],
)
async def test_hmac_matrix(worker, job_input, secret, skew, ok):
    worker(signing_key=SECRET)
    request = signed(job_input, secret, skew) if secret else job_input
    result = await embed(request)
    if ok:
        assert "error" not in result
    else:
        assert result["error"] == "Authentication failed"


async def test_tampered_input_fails_authentication(worker):
    worker(signing_key=SECRET)
    result = await embed({**signed({"text": "a cat"}), "text": "a dog"})
    assert result["error"] == "Authentication failed"


async def test_worker_keeps_serving_after_errors(worker):
    assert "error" in await embed({"texts": []})
    assert "embedding" in await embed({"text": "still here"})
