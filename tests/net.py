"""Loopback ports for the servers tests start, and a user's webhook receiver."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver(BaseHTTPRequestHandler):
    """A user's webhook on loopback: records what it gets, answers `status`."""

    received: list[tuple[dict[str, str], bytes]] = []  # noqa: RUF012 - per-server, reset below
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def receiver(status: int) -> tuple[ThreadingHTTPServer, type[Receiver]]:
    handler = type("Handler", (Receiver,), {"received": [], "status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler
