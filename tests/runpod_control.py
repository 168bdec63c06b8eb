"""The local RunPod (runpod_api.emulator) served in this process, with every answer of its REST
API v2 control plane checked against RunPod's published spec (runpod_api/rest-v2-openapi.json):
a response off the spec is recorded in `violations`, which tests assert empty (the local RunPod
itself refuses requests off the spec, as RunPod does). Tests rotate its API keys
(`emulator.api_keys`), set GPU availability and make changes out of band through the same REST
API a person would use."""

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import uvicorn

from runpod_api import spec
from runpod_api.emulator.server import create_app
from tests.net import free_port

CONTROLLED_IMAGE = "tandem/controlled:test"  # runs tests/workers/controlled.py
# The same worker from a private registry: pulled only with a registry credential holding
# PRIVATE_REGISTRY's username and password (as Artifact Registry takes a base64 key).
PRIVATE_HOST = "europe-west1-docker.pkg.dev"
PRIVATE_IMAGE = f"{PRIVATE_HOST}/engine-test/tandem-dev/controlled:dev"
PRIVATE_REGISTRY = ("_json_key_base64", "ZW5naW5lLXRlc3Qta2V5")
IMAGES = {CONTROLLED_IMAGE: "tests.workers.controlled", PRIVATE_IMAGE: "tests.workers.controlled"}


class SpecCheck:
    """ASGI middleware over the local RunPod: each control-plane answer checked against the
    spec's response for its operation and status; every request's method, path and API key
    recorded in `calls`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.violations: list[str] = []
        self.calls: list[tuple[str, str, str]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        key = dict(_headers(scope)).get("authorization", "").removeprefix("Bearer ")
        self.calls.append((scope["method"], scope["path"], key))
        operation = spec.operation(scope["method"], scope["path"])
        if operation is None or operation.template.endswith("/logs"):  # the job API; a stream
            return await self.app(scope, receive, send)
        sent: list[dict] = []

        async def capture(message: dict) -> None:
            sent.append(message)

        await self.app(scope, receive, capture)
        status = sent[0]["status"]
        content = b"".join(m.get("body", b"") for m in sent[1:])
        body = json.loads(content) if content else None
        where = f"{scope['method']} {scope['path']} -> {status}"
        self.violations.extend(f"{where}: {e}" for e in operation.response_errors(status, body))
        for message in sent:
            await send(message)


def _headers(message: dict) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in message["headers"]]


class ControlPlane:
    """The local RunPod in a thread of its own: `url` is its REST API v2 host (paths /v2/...),
    `jobs_url` its job API (`/v2`)."""

    def __init__(
        self,
        api_key: str,
        images: dict[str, str] | None = None,
        machine_env: dict[str, str] | None = None,
        checked: bool = True,
    ) -> None:
        """`images`: more image names to worker modules, beside IMAGES; `machine_env`: what
        this machine gives every worker (the CPU settings of the real workers); `checked`:
        answers checked against the spec (a benchmark leaves that CPU work out)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.jobs_url = f"{self.url}/v2"
        registries = {PRIVATE_HOST: PRIVATE_REGISTRY}
        app = create_app(
            {},
            self.url,
            api_key=api_key,
            images=IMAGES | (images or {}),
            registries=registries,
            machine_env=machine_env,
        )
        self.emulator = app.state.emulator
        self.check = SpecCheck(app)
        self.api_key = api_key
        served = self.check if checked else app
        config = uvicorn.Config(served, port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve())

    def __enter__(self) -> "ControlPlane":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "the local RunPod did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)

    @property
    def violations(self) -> list[str]:
        return self.check.violations

    def rest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to the REST API v2 (`path`: /v2/...) with the current key, as a person would
        make one."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def rotate_key(self, new_key: str) -> None:
        """Accept only `new_key` from now on (the old one is revoked)."""
        self.emulator.api_keys.clear()
        self.emulator.api_keys.add(new_key)
        self.api_key = new_key
