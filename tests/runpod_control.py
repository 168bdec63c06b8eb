"""The emulator's RunPod control plane (REST API v1, and v2's account secrets) served in this
process, with every request and every successful response checked against RunPod's published
specs (shared/runpod/rest-v1-openapi.json, kept as infra/runpod/rest-v1-openapi.json; the v2
secrets reference transcribed in infra/runpod/rest-v2-secrets-openapi.json): a request off the
spec is answered 400, as RunPod would, and recorded in `violations`, which tests assert
empty. Tests rotate its API keys (`emulator.api_keys`) and make changes out of band through
the same REST API a person would use."""

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import uvicorn
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from gpu_worker.emulator.server import create_app
from infra.runpod.client import spec, spec_v2
from tests.net import free_port

CONTROLLED_IMAGE = "tandem/controlled:test"  # runs tests/workers/controlled.py
# The same worker from a private registry: pulled only with a registry credential holding
# PRIVATE_REGISTRY's username and password (as Artifact Registry takes a base64 key).
PRIVATE_HOST = "europe-west1-docker.pkg.dev"
PRIVATE_IMAGE = f"{PRIVATE_HOST}/engine-test/tandem-dev/controlled:dev"
PRIVATE_REGISTRY = ("_json_key_base64", "ZW5naW5lLXRlc3Qta2V5")
IMAGES = {CONTROLLED_IMAGE: "tests.workers.controlled", PRIVATE_IMAGE: "tests.workers.controlled"}


class SpecCheck:
    """ASGI middleware over the emulator's app: /v1 and /v2/account traffic checked against
    RunPod's specs; every request's method, path and API key recorded in `calls`."""

    def __init__(self, app: Any, base_url: str) -> None:
        self.app = app
        self.base_url = base_url
        self.violations: list[str] = []
        self.calls: list[tuple[str, str, str]] = []
        # RunPod's v1 spec repeats operation ids on its `/update` aliases, which a strict spec
        # check refuses; the schemas themselves are what traffic is checked against.
        config = Config(spec_validator_cls=None)
        self.specs = {
            prefix: OpenAPI.from_dict(
                {**document, "servers": [{"url": base_url + api}]}, config=config
            )
            for prefix, api, document in (
                ("/v1", "/v1", spec()),
                ("/v2/account", "/v2", spec_v2()),
            )
        }

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            key = dict(_headers(scope)).get("authorization", "").removeprefix("Bearer ")
            self.calls.append((scope["method"], scope["path"], key))
        prefixes = [p for p in self.specs if scope.get("path", "").startswith(p)]
        if scope["type"] != "http" or not prefixes:
            return await self.app(scope, receive, send)
        openapi = self.specs[prefixes[0]]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = self._request(scope, body)
        try:
            openapi.validate_request(WerkzeugOpenAPIRequest(request))
        except Exception as exc:  # any validation error is a violation of the spec
            self.violations.append(f"{request.method} {request.full_path}: {exc!r}")
            return await _respond(send, 400, {"error": f"invalid request: {exc}"})
        sent: list[dict] = []

        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: dict) -> None:
            sent.append(message)

        await self.app(scope, replay, capture)
        start = sent[0]
        content = b"".join(m.get("body", b"") for m in sent[1:])
        if 200 <= start["status"] < 300:
            response = Response(content, status=start["status"], headers=_headers(start))
            try:
                openapi.validate_response(
                    WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response)
                )
            except Exception as exc:
                self.violations.append(f"response to {request.method} {request.path}: {exc!r}")
        for message in sent:
            await send(message)

    def _request(self, scope: dict, body: bytes) -> Request:
        builder = EnvironBuilder(
            path=scope["path"],
            base_url=self.base_url,
            method=scope["method"],
            query_string=scope["query_string"].decode(),
            headers=_headers(scope),
            data=body,
        )
        return Request(builder.get_environ())


def _headers(message: dict) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in message["headers"]]


async def _respond(send: Any, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ControlPlane:
    """The emulator in a thread of its own: `url` is its REST API v1, `jobs_url` its job API."""

    def __init__(self, api_key: str, images: dict[str, str] | None = None) -> None:
        """`images`: more image names to worker modules, beside IMAGES."""
        self.port = free_port()
        base = f"http://127.0.0.1:{self.port}"
        self.url, self.jobs_url = f"{base}/v1", f"{base}/v2"
        self.v2_url = f"{base}/v2"  # REST API v2 (account secrets) beside the job API
        registries = {PRIVATE_HOST: PRIVATE_REGISTRY}
        images = IMAGES | (images or {})
        app = create_app({}, base, api_key=api_key, images=images, registries=registries)
        self.emulator = app.state.emulator
        self.check = SpecCheck(app, base)
        self.api_key = api_key
        config = uvicorn.Config(self.check, port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve())

    def __enter__(self) -> "ControlPlane":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)

    @property
    def violations(self) -> list[str]:
        return self.check.violations

    def rest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to the REST API v1 (or v2, for a path under `v2_url`) with the current key,
        as a person would make one."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        url = path if path.startswith("http") else f"{self.url}{path}"
        return httpx.request(method, url, headers=headers, timeout=30, **kwargs)

    def rotate_key(self, new_key: str) -> None:
        """Accept only `new_key` from now on (the old one is revoked)."""
        self.emulator.api_keys.clear()
        self.emulator.api_keys.add(new_key)
        self.api_key = new_key
