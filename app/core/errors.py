"""One error shape for every failure, OpenAI's with a request id:
`{"error": {"code", "message", "type", "param", "request_id"}}`."""

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from app.storage.base import StorageUnavailable

log = logging.getLogger("tandem.errors")


class ApiError(Exception):
    """A known failure, answered with `status` and a message that says what to fix."""

    status = 400
    code = "bad_request"
    param: str | None = None  # the request field at fault, when one is

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.param = param


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class PayloadTooLarge(ApiError):
    status, code = 413, "body_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class InvalidInput(ApiError):
    """Input that is well-formed but cannot be used (an empty file, a PDF without text)."""

    status, code = 422, "validation_error"


class InputRefused(ApiError):
    """A worker refused the client's input (e.g. `max_tokens` beyond the model's context)."""

    status, code = 422, "invalid_input"


class InputTooLarge(ApiError):
    """A worker refused the client's input as over a size limit (a prompt longer than the
    model's context, an image over the pixel limit)."""

    status, code = 413, "input_too_large"


class OpenAIError(ApiError):
    """A worker's OpenAI serving refused or failed a request: its status, message and `param`."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param
        self.code = _HTTP_CODES.get(status, "invalid_input" if status < 500 else "worker_failed")


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class OverBudget(ApiError):
    """The monthly budget of the key or its tenant is spent (OpenAI's code: its SDKs raise
    RateLimitError)."""

    status, code = 429, "insufficient_quota"


class Conflict(ApiError):
    """The request clashes with what is there (a name taken, a key still in use)."""

    status, code = 409, "conflict"


class NotConfigured(ApiError):
    """This API is not set up for the request (a setting the stack sets is unset)."""

    status, code = 503, "not_configured"


class WorkerFailed(ApiError):
    status, code = 502, "worker_failed"


class WorkerUnavailable(ApiError):
    status, code = 503, "worker_unavailable"


class DatabaseUnavailable(ApiError):
    """`detail`: the database's own reason, without the password, for operators (readiness);
    clients get the message alone."""

    status, code = 503, "database_unavailable"

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class WorkerTimeout(ApiError):
    status, code = 504, "worker_timeout"


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "")


# OpenAI's error types, by our codes (any other code is the client's: invalid_request_error).
_TYPES = {
    "unauthorized": "authentication_error",
    "forbidden": "permission_error",
    "rate_limited": "rate_limit_error",
    **dict.fromkeys(
        [
            "internal_error",
            "not_ready",
            "database_unavailable",
            "storage_unavailable",
            "not_configured",
            "worker_failed",
            "worker_unavailable",
            "worker_timeout",
            "hub_unavailable",
            "runpod_unavailable",
        ],
        "server_error",
    ),
}


def error_body(
    code: str, message: str, request_id: str, param: str | None = None
) -> dict[str, Any]:
    kind = _TYPES.get(code, "invalid_request_error")
    detail = {"code": code, "message": message, "type": kind, "param": param}
    return {"error": detail | {"request_id": request_id}}


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    body = error_body(code, message, request_id_of(request), param)
    return JSONResponse(body, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{location}: {message}")
    return "; ".join(parts)


def _param(exc: RequestValidationError) -> str | None:
    """The field the first error is about (`messages.0.content`, `group_by`), if any."""
    errors = exc.errors()
    where = [str(p) for p in errors[0].get("loc", ())[1:]] if errors else []
    return ".".join(where) or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, exc.message, exc.headers, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = _describe_validation(exc)
        return error_response(request, 422, "validation_error", message, param=_param(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body"
            message = "the body cannot be read: send JSON encoded as UTF-8"
            if isinstance(exc.__cause__, RecursionError):
                message = "the body's JSON is nested too deeply to read: flatten it"
            return error_response(request, 422, "validation_error", message)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:  # every method the path takes, whichever route has it
            headers = {**(headers or {}), "Allow": ", ".join(_allowed(request))}
        return error_response(request, exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(asyncpg.PostgresConnectionError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(request, 503, "database_unavailable", "the database is unavailable")

    @app.exception_handler(StorageUnavailable)
    async def _storage_down(request: Request, exc: StorageUnavailable) -> JSONResponse:
        log.warning("object storage unavailable: %s", exc)
        message = f"object storage is unavailable: {exc}"
        return error_response(request, 503, "storage_unavailable", message)

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return error_response(
                request, 503, "database_unavailable", "the database is unavailable"
            )
        if (state := _sqlstate(exc)) in UNSTORABLE:  # a value that slipped past validation
            log.warning("unstorable value: %s", state)
            return error_response(request, 422, "validation_error", UNSTORABLE_MESSAGE)
        raise exc


def database_down(exc: BaseException) -> DatabaseUnavailable | None:
    """The API's error for a lost database connection, as the handlers above answer it (None:
    `exc` is not one): for a stream, whose status is already sent."""
    lost = (
        OperationalError,
        InterfaceError,
        asyncpg.InterfaceError,
        asyncpg.PostgresConnectionError,
    )
    if isinstance(exc, lost) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return DatabaseUnavailable("the database is unavailable")
    return None


def _allowed(request: Request) -> list[str]:
    """The methods some route takes at the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(request.url.path):
            methods |= route_methods
    return sorted(methods)


# Postgres refusing a value, not failing: a NUL character (22021), a \u0000 escape in jsonb
# (22P05), NaN or Infinity in jsonb (22P02).
UNSTORABLE = {"22021", "22P05", "22P02"}
UNSTORABLE_MESSAGE = (
    "a value cannot be stored: text must not contain the NUL character (U+0000) and numbers "
    "must be finite"
)


def _sqlstate(exc: DBAPIError) -> str | None:
    """The SQLSTATE of the database's error (asyncpg's, under SQLAlchemy's wrapper)."""
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        if (state := getattr(error, "sqlstate", None)) is not None:
            return str(state)
    return None
