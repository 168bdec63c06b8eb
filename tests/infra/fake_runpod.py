"""A fake RunPod control plane (REST API v1: templates, endpoints) on a local port.

RunPod's control plane cannot run here, so this stands in for it, and checks itself against
RunPod's published OpenAPI spec (shared/runpod/rest-v1-openapi.json): every request is
validated (path, method, bearer auth, body schema) and so is every successful response it
sends. Anything off the spec is recorded in `violations` (and answered 400, as RunPod would);
tests assert the list is empty. Tests can also edit or delete resources out of band and make
the next calls fail with a given status.
"""

import itertools
import json
import threading
from pathlib import Path
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

import infra.runpod

SPEC_PATH = Path(infra.runpod.__file__).with_name("rest-v1-openapi.json")


def load_spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


TEMPLATE_DEFAULTS = {
    "containerDiskInGb": 50,
    "env": {},
    "isServerless": False,
    "category": "NVIDIA",
}
ENDPOINT_DEFAULTS = {
    "computeType": "GPU",
    "gpuCount": 1,
    "idleTimeout": 5,
    "scalerType": "QUEUE_DELAY",
    "scalerValue": 4,
    "workersMin": 0,
    "workersMax": 3,
}


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *_args: object) -> None:
        pass


class FakeRunPod:
    def __init__(self, api_key: str = "rp-test-key") -> None:
        self.api_key = api_key
        self.templates: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.violations: list[str] = []
        self.failures: list[int] = []  # statuses the next calls answer with, in order
        self._ids = itertools.count(1)
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=QuietHandler
        )
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"
        spec = load_spec()
        spec["servers"] = [{"url": self.base_url}]
        # RunPod's spec repeats operation ids on its `/update` aliases, which a strict spec
        # check refuses; the schemas themselves are what the requests are checked against.
        self._openapi = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeRunPod":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()

    def _wsgi(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        self.requests.append((request.method, request.path, body))
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json({"message": "Unauthorized"}, 401)
        if self.failures:
            return _json({"error": "injected failure"}, self.failures.pop(0))
        try:
            self._openapi.validate_request(WerkzeugOpenAPIRequest(request))
        except Exception as exc:  # any validation error is a violation of the spec
            self.violations.append(f"{request.method} {request.path}: {exc!r}")
            return _json({"error": f"invalid request: {exc}"}, 400)
        response = self._route(request.method, request.path.removeprefix("/v1"), body or {})
        if 200 <= response.status_code < 300:
            try:
                self._openapi.validate_response(
                    WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response)
                )
            except Exception as exc:
                self.violations.append(f"response to {request.method} {request.path}: {exc!r}")
        return response

    def _route(self, method: str, path: str, body: dict[str, Any]) -> Response:
        kind, _, item_id = path.strip("/").partition("/")
        store = {"templates": self.templates, "endpoints": self.endpoints}.get(kind)
        if store is None:
            return _json({"error": "not found"}, 404)
        if not item_id:
            if method == "POST":
                return _json(self._create(kind, body))
            return _json(list(store.values()))
        if item_id not in store:
            return _json({"error": f"{kind[:-1]} {item_id} not found"}, 404)
        if method == "GET":
            return _json(store[item_id])
        if method == "PATCH":
            store[item_id].update(body)
            return _json(store[item_id])
        del store[item_id]
        return Response(status=204)

    def _create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        item_id = f"{kind[0]}{next(self._ids):05d}"
        defaults = TEMPLATE_DEFAULTS if kind == "templates" else ENDPOINT_DEFAULTS
        item = {**defaults, **body, "id": item_id}
        item.pop("flashboot", None)  # accepted, never returned (see shared/runpod/README.md)
        store = self.templates if kind == "templates" else self.endpoints
        store[item_id] = item
        return item


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")
