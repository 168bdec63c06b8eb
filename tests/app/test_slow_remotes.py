"""A remote that trickles: written as the attack. Forty image URLs on a server that sends one
byte every 5 s are each refused at the fetch deadline, and meanwhile the API keeps answering
its other clients (its health, a listing, a document upload that stores and parses) in under
2 s: downloads wait on threads of their own, never on the ones storage and parsing use."""

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import make_settings, start_api

DEADLINE_S = 4.0


class _Trickle(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(5)
        except OSError:  # the API hung up: its deadline
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def trickle():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_trickling_downloads_end_at_the_deadline_and_starve_nothing(
    database_url, local_backend, trickle, tmp_path
):
    settings = make_settings(
        database_url,
        storage_dir=tmp_path,
        fetch_allowed_networks=["127.0.0.0/8"],
        fetch_deadline_seconds=DEADLINE_S,
        rate_limit_per_minute=100_000,
    )
    async for api in start_api(settings, local_backend):
        started = time.monotonic()
        fetches = [
            asyncio.create_task(api.post("/v1/images", json={"url": f"{trickle}/{n}.png"}))
            for n in range(40)
        ]
        await asyncio.sleep(0.5)  # every download is under way
        for _ in range(3):
            for call in (
                api.client.get("/health"),
                api.get("/v1/images"),
                api.post(
                    "/v1/documents",
                    files={"file": ("note.txt", b"Trickles starve nothing.", "text/plain")},
                ),
            ):
                asked = time.monotonic()
                response = await call
                assert response.status_code < 300, response.text
                assert time.monotonic() - asked < 2.0
        answers = await asyncio.gather(*fetches)
        for answer in answers:
            assert answer.status_code == 422, answer.text
            assert f"did not download within {DEADLINE_S:g} s" in answer.json()["error"]["message"]
        # 40 downloads on 16 fetch threads: three rounds of the deadline, not 40 of them.
        assert time.monotonic() - started < 4 * DEADLINE_S + 5
