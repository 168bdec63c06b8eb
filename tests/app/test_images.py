"""Images through the API served over HTTP: stored, embedded by the in-process CLIP worker
from a signed URL to the API itself (HMAC-signed job), searched by text; and the refusals."""

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image as PILImage
from sqlalchemy import text

from app.storage import ObjectNotFound


def png(color: str, size: int = 48) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (size, size), color).save(buffer, "PNG")
    return buffer.getvalue()


class _Images(BaseHTTPRequestHandler):
    routes = {  # noqa: RUF012 - fixed test data
        "/red.png": ("image/png", png("red")),
        "/page.html": ("text/html", b"<html></html>"),
    }

    def do_GET(self) -> None:
        content_type, body = self.routes.get(self.path, ("text/plain", b""))
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def image_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def image_row(served_api, image_id: str):
    async with served_api.app.state.engine.connect() as conn:
        query = "SELECT object_key, vector_dims(embedding) AS dim FROM images WHERE id = :id"
        return (await conn.execute(text(query), {"id": image_id})).one_or_none()


async def test_uploaded_image_is_stored_embedded_and_found(served_api):
    files = {"file": ("blue.png", png("blue"), "application/octet-stream")}
    response = await served_api.post(
        "/v1/images", files=files, data={"metadata": '{"album": "sky"}'}
    )
    assert response.status_code == 201, response.text
    image = response.json()
    assert image["source_id"] == "blue.png" and image["content_type"] == "image/png"
    row = await image_row(served_api, image["id"])
    assert row.dim == 512 and served_api.storage.get(row.object_key) == png("blue")

    hits = (
        await served_api.get("/v1/search", params={"q": "a blue square", "kind": "image"})
    ).json()
    [hit] = [h for h in hits["hits"] if h["document_id"] == image["id"]]
    assert hit["chunk"] is None and hit["metadata"] == {"album": "sky"}
    assert -1.0 <= hit["score"] <= 1.0
    narrowed = await served_api.get(
        "/v1/search", params={"q": "sky", "kind": "image", "filter": '{"metadata.album": "sea"}'}
    )
    assert narrowed.json() == {"hits": []}
    assert (await served_api.get(f"/v1/images/{image['id']}")).json() == image


async def test_image_from_a_url_replaces_by_source_id(served_api, image_server):
    body = {"url": f"{image_server}/red.png", "source_id": "swatch", "title": "Red"}
    first = await served_api.post("/v1/images", json=body)
    assert first.status_code == 201, first.text
    old_key = (await image_row(served_api, first.json()["id"])).object_key
    files = {"file": ("green.png", png("green"), "image/png")}
    second = await served_api.post("/v1/images", files=files, data={"source_id": "swatch"})
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"] and second.json()["title"] == "swatch"
    with pytest.raises(ObjectNotFound):
        served_api.storage.get(old_key)
    new_key = (await image_row(served_api, second.json()["id"])).object_key
    assert served_api.storage.get(new_key) == png("green")

    assert (await served_api.delete(f"/v1/images/{second.json()['id']}")).status_code == 204
    assert await image_row(served_api, second.json()["id"]) is None
    with pytest.raises(ObjectNotFound):
        served_api.storage.get(new_key)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "words"),
    [
        ({"files": {"file": ("a.png", b"not an image", "image/png")}}, 415, "PNG, JPEG"),
        ({"files": {"file": ("a.png", b"", "image/png")}}, 422, "empty"),
        ({"json": {"url": "ftp://example.com/a.png"}}, 422, "url"),
        ({"json": {"url": "http://x.test/" + "a" * 200}}, 422, "give a source_id"),
        ({"json": {"url": "http://169.254.169.254/latest/meta-data"}}, 422, "non-public"),
        ({"content": b"x", "headers": {"content-type": "image/png"}}, 415, "multipart"),
    ],
)
async def test_bad_images_are_refused(served_api, request_kwargs, status, words):
    response = await served_api.post("/v1/images", **request_kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


@pytest.mark.parametrize(("path", "words"), [("/page.html", "not an image"), ("/none", "404")])
async def test_image_urls_that_are_not_images_are_refused(served_api, image_server, path, words):
    response = await served_api.post("/v1/images", json={"url": image_server + path})
    assert response.status_code == 422
    assert words in response.json()["error"]["message"]
