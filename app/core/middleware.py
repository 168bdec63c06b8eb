"""ASGI middleware: request ids, one JSON log line per request, and the body size limit."""

import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import error_body

log = logging.getLogger("tandem.request")
REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _url_holds_nul(scope: Scope) -> bool:
    query = scope.get("query_string", b"").lower()
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


async def _respond(send: Send, status: int, code: str, message: str, request_id: str) -> None:
    body = json.dumps(error_body(code, message, request_id)).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Gives each request an id (kept from X-Request-ID when valid), echoes it on the response,
    logs one JSON line per request, and turns an unexpected exception into a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status: int | None = None  # set once the response has started

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        try:
            if _url_holds_nul(scope):  # no path or query parameter may reach Postgres with one
                message = "the URL must not contain the NUL character (%00)"
                await _respond(send_with_id, 422, "validation_error", message, request_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
            if status is not None:
                raise
            await _respond(send_with_id, 500, "internal_error", "internal error", request_id)
        finally:
            log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status or 500,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "api_key_id": scope["state"].get("api_key_id"),
                    }
                },
            )


class BodySizeLimitMiddleware:
    """Answers 413 for a body over `max_bytes` (`upload_bytes` on `upload_paths`; a path with a
    parameter, `/v1/objects/{key:path}`, covers every path under its fixed start): at once
    when Content-Length says so, otherwise as soon as the bytes received pass the limit
    (chunked uploads)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, upload_bytes: int, upload_paths: set[str]
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes
        self.upload_paths = {path for path in upload_paths if "{" not in path}
        self.upload_prefixes = tuple(path.split("{")[0] for path in upload_paths if "{" in path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        upload = path in self.upload_paths or path.startswith(self.upload_prefixes)
        limit = self.upload_bytes if upload else self.max_bytes
        too_large = f"request body over the limit of {limit} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._too_large(scope, send, too_large)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, counting_receive, send)

    async def _too_large(self, scope: Scope, send: Send, message: str) -> None:
        body = json.dumps(error_body("body_too_large", message, scope["state"]["request_id"]))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
