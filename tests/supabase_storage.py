"""A local Supabase Storage for the tests: the HTTP API (under /storage/v1) that the `supabase`
client calls, held to the shapes of Supabase Storage's own route schemas (github.com/supabase/
storage: src/http/routes/object/{createObject,getObject,deleteObjects,getSignedURL,
getSignedObject,listObjects}.ts, src/http/routes/bucket/getBucket.ts, the object schema in
src/http/schemas/object.ts). Errors are what src/internal/errors/codes.ts and the error handler
render: HTTP 400 (500 for internal errors) with `{statusCode, code, error, message}`.

Requests are authorized as Storage does, by a JWT signed with the project's secret (a service
role key is one); signed URLs carry a JWT `{url: "bucket/path", exp}` made with the same secret.
A request off those shapes is answered 400 and recorded in `violations`, which tests assert
empty. Objects live in memory."""

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import jsonschema
import jwt
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.net import free_port

JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"

# Request bodies, as the route files declare them. Fastify's Ajv coerces types (storage3 sends
# `expiresIn` as a string), so integer fields given as digit strings are coerced first.
SIGN_BODY = {
    "type": "object",
    "properties": {"expiresIn": {"type": "integer", "minimum": 1}, "transform": {"type": "object"}},
    "required": ["expiresIn"],
}
LIST_BODY = {
    "type": "object",
    "properties": {
        "prefix": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1},
        "offset": {"type": "integer", "minimum": 0},
        "sortBy": {
            "type": "object",
            "properties": {
                "column": {
                    "type": "string",
                    "enum": ["name", "updated_at", "created_at", "last_accessed_at"],
                },
                "order": {"type": "string", "enum": ["asc", "desc"]},
            },
            "required": ["column"],
        },
        "search": {"type": "string"},
    },
    "required": ["prefix"],
}
DELETE_BODY = {
    "type": "object",
    "properties": {"prefixes": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["prefixes"],
}


def service_key(secret: str = JWT_SECRET, role: str = "service_role") -> str:
    """A project key as Supabase issues them: a JWT with the role, signed with the secret."""
    return jwt.encode({"iss": "supabase", "role": role, "iat": int(time.time())}, secret)


class StorageFailure(Exception):
    def __init__(self, status: str, code: str, message: str, error: str | None = None) -> None:
        self.status, self.code, self.message, self.error = status, code, message, error or code

    def response(self) -> Response:
        body = {"statusCode": self.status, "code": self.code, "error": self.error}
        return _json(body | {"message": self.message}, 500 if self.status == "500" else 400)


def no_such_bucket() -> StorageFailure:
    return StorageFailure("404", "NoSuchBucket", "Bucket not found", "Bucket not found")


def no_such_key() -> StorageFailure:
    return StorageFailure("404", "NoSuchKey", "Object not found", "not_found")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    cache_control: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self, bucket: str, name: str) -> dict[str, Any]:
        """The object as Storage lists and deletes it (objectSchema)."""
        stamp = self.created.isoformat().replace("+00:00", "Z")
        return {
            "name": name,
            "bucket_id": bucket,
            "id": self.id,
            "updated_at": stamp,
            "created_at": stamp,
            "last_accessed_at": stamp,
            "metadata": {
                "eTag": f'"{uuid.uuid5(uuid.NAMESPACE_OID, self.id).hex}"',
                "size": len(self.data),
                "mimetype": self.content_type,
                "cacheControl": f"max-age={self.cache_control}",
                "lastModified": stamp,
                "contentLength": len(self.data),
                "httpStatusCode": 200,
            },
        }


class FakeSupabaseStorage:
    """Serves on loopback while entered; `url` is the project URL the client takes."""

    def __init__(self, buckets: tuple[str, ...] = ("uploads",), secret: str = JWT_SECRET) -> None:
        self.secret = secret
        self.buckets: dict[str, dict[str, StoredObject]] = {name: {} for name in buckets}
        self.created = datetime.now(UTC).isoformat()
        self.violations: list[str] = []
        self.requests: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        api = "/storage/v1"
        self.routes = Map(
            [
                Rule(f"{api}{path}", methods=methods, endpoint=endpoint)
                for path, methods, endpoint in (
                    ("/bucket/<bucket>", ["GET"], "bucket"),
                    ("/object/list/<bucket>", ["POST"], "list"),
                    ("/object/sign/<bucket>/<path:name>", ["POST"], "sign"),
                    ("/object/sign/<bucket>/<path:name>", ["GET"], "signed"),
                    ("/object/upload/sign/<bucket>/<path:name>", ["POST"], "sign_upload"),
                    ("/object/upload/sign/<bucket>/<path:name>", ["PUT"], "signed_upload"),
                    ("/object/<bucket>/<path:name>", ["POST", "PUT"], "upload"),
                    ("/object/<bucket>/<path:name>", ["GET"], "download"),
                    ("/object/<bucket>", ["DELETE"], "delete"),
                )
            ]
        )

    def __enter__(self) -> "FakeSupabaseStorage":
        self.server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()

    def names(self, bucket: str = "uploads") -> list[str]:
        return sorted(self.buckets[bucket])

    # -- the server ---------------------------------------------------------------------
    def _wsgi(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append(f"{request.method} {request.path}")
        try:
            endpoint, args = self.routes.bind_to_environ(environ).match()
            if endpoint not in ("signed", "signed_upload"):  # a signed URL authorizes itself
                self._authorize(request)
            response = getattr(self, f"_{endpoint}")(request, **args)
        except StorageFailure as failure:
            response = failure.response()
        except _Violation as exc:
            self.violations.append(f"{request.method} {request.path}: {exc}")
            response = StorageFailure("400", "InvalidRequest", str(exc)).response()
        except Exception as exc:  # werkzeug's NotFound / MethodNotAllowed: a route Storage lacks
            self.violations.append(f"{request.method} {request.path}: {exc!r}")
            response = _json({"statusCode": "404", "error": "Not Found", "message": str(exc)}, 404)
        return response(environ, start_response)

    def _authorize(self, request: Request) -> None:
        if not request.headers.get("apikey"):
            raise _Violation("no apikey header")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            jwt.decode(token, self.secret, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.PyJWTError as exc:
            raise StorageFailure("403", "AccessDenied", str(exc), "Unauthorized") from None

    def _objects(self, bucket: str) -> dict[str, StoredObject]:
        if bucket not in self.buckets:
            raise no_such_bucket()
        return self.buckets[bucket]

    def _body(self, request: Request, schema: dict) -> dict[str, Any]:
        try:
            body = request.get_json(force=True)
        except Exception:
            raise _Violation("the body is not JSON") from None
        for name, spec in schema["properties"].items():
            value = body.get(name)
            if spec.get("type") == "integer" and isinstance(value, str) and value.isdigit():
                body[name] = int(value)
        try:
            jsonschema.validate(body, schema)
        except jsonschema.ValidationError as exc:
            raise _Violation(f"body: {exc.message}") from None
        return body

    def _bucket(self, request: Request, bucket: str) -> Response:
        self._objects(bucket)
        return _json(
            {
                "id": bucket,
                "name": bucket,
                "owner": "",
                "public": False,
                "file_size_limit": None,
                "allowed_mime_types": None,
                "created_at": self.created,
                "updated_at": self.created,
            }
        )

    def _upload(self, request: Request, bucket: str, name: str) -> Response:
        objects = self._objects(bucket)
        upload = request.files.get("file")
        if upload is None:
            raise _Violation("a multipart body without its `file` part")
        upsert = request.method == "PUT" or request.headers.get("x-upsert") == "true"
        if request.method == "POST" and name in objects and not upsert:
            message = "The resource already exists"
            raise StorageFailure("409", "KeyAlreadyExists", message, "Duplicate")
        if request.method == "PUT" and name not in objects:
            raise no_such_key()
        objects[name] = StoredObject(
            upload.read(),
            upload.mimetype or "application/octet-stream",
            request.form.get("cacheControl", "3600"),
        )
        return _json({"Key": f"{bucket}/{name}", "id": objects[name].id})

    def _download(self, request: Request, bucket: str, name: str) -> Response:
        return self._serve(self._objects(bucket), name)

    def _serve(self, objects: dict[str, StoredObject], name: str) -> Response:
        if name not in objects:
            raise no_such_key()
        stored = objects[name]
        headers = {
            "Cache-Control": f"max-age={stored.cache_control}",
            "Last-Modified": formatdate(stored.created.timestamp(), usegmt=True),
        }
        return Response(stored.data, mimetype=stored.content_type, headers=headers)

    def _delete(self, request: Request, bucket: str) -> Response:
        objects = self._objects(bucket)
        body = self._body(request, DELETE_BODY)
        gone = [objects.pop(name).row(bucket, name) for name in body["prefixes"] if name in objects]
        return _json(gone)

    def _sign(self, request: Request, bucket: str, name: str) -> Response:
        body = self._body(request, SIGN_BODY)
        if name not in self._objects(bucket):
            raise no_such_key()
        claims = {"url": f"{bucket}/{name}", "iat": int(time.time())}
        token = jwt.encode(claims | {"exp": claims["iat"] + body["expiresIn"]}, self.secret)
        return _json({"signedURL": f"/object/sign/{bucket}/{name}?token={token}"})

    def _claims(self, request: Request, bucket: str, name: str) -> dict[str, Any]:
        """The claims of a signed URL's token, made for this object."""
        token = request.args.get("token")
        if not token:
            raise _Violation("querystring must have required property 'token'")
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise StorageFailure("400", "InvalidJWT", str(exc)) from None
        if claims.get("url") != f"{bucket}/{name}":
            raise StorageFailure("400", "InvalidSignature", "The url do not match the signature")
        return claims

    def _signed(self, request: Request, bucket: str, name: str) -> Response:
        self._claims(request, bucket, name)
        return self._serve(self._objects(bucket), name)

    def _sign_upload(self, request: Request, bucket: str, name: str) -> Response:
        """getSignedUploadURL: a token for one upload of a new object (or any, with x-upsert),
        valid two hours (Storage's fixed expiry)."""
        upsert = request.headers.get("x-upsert") == "true"
        if name in self._objects(bucket) and not upsert:
            message = "The resource already exists"
            raise StorageFailure("409", "KeyAlreadyExists", message, "Duplicate")
        claims = {"url": f"{bucket}/{name}", "upsert": upsert, "exp": int(time.time()) + 7200}
        token = jwt.encode(claims, self.secret)
        return _json({"url": f"/object/upload/sign/{bucket}/{name}?token={token}"})

    def _signed_upload(self, request: Request, bucket: str, name: str) -> Response:
        """uploadSignedObject: the body as a multipart `file` part or as the raw bytes (its
        Content-Type the object's)."""
        claims = self._claims(request, bucket, name)
        objects = self._objects(bucket)
        if name in objects and not claims.get("upsert"):
            message = "The resource already exists"
            raise StorageFailure("409", "KeyAlreadyExists", message, "Duplicate")
        upload = request.files.get("file")
        if upload is not None:
            data, content_type = upload.read(), upload.mimetype
        else:
            data, content_type = request.get_data(), request.mimetype
        objects[name] = StoredObject(data, content_type or "application/octet-stream", "3600")
        return _json({"Key": f"{bucket}/{name}"})

    def _list(self, request: Request, bucket: str) -> Response:
        objects = self._objects(bucket)
        body = self._body(request, LIST_BODY)
        prefix = body["prefix"]
        if prefix and not prefix.endswith("/"):  # Storage takes the prefix as a folder
            prefix += "/"
        entries: dict[str, dict[str, Any]] = {}
        for name in sorted(objects):
            if not name.startswith(prefix):
                continue
            first, _, rest = name.removeprefix(prefix).partition("/")
            if rest:  # a folder: a name without id or metadata
                entries.setdefault(first, _folder(first))
            else:
                entries[first] = objects[name].row(bucket, first)
        ordered = sorted(entries.values(), key=lambda entry: entry["name"])
        offset, limit = body.get("offset", 0), body.get("limit", 100)
        return _json(ordered[offset : offset + limit])


def _folder(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "id": None,
        "updated_at": None,
        "created_at": None,
        "last_accessed_at": None,
        "metadata": None,
    }


class _Violation(Exception):
    """A request off Storage's published shapes."""
