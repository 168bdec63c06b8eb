"""RunPod's control plane, REST API v2 (`https://api.runpod.io/v2/...`, spec beside this file):
serverless endpoints, their workers, releases and logs, templates, registry credentials,
account secrets, the GPU catalog and serverless billing.

Bodies are typed (runpod_api.models) and checked against the spec before they are sent. Errors
are RFC 9457 problems: RunPodApiError carries their `detail` and `errors`, with the API key,
every env value, password and secret value this client sent masked (RunPod's messages can echo
the input).
"""

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from runpod_api.models import (
    Body,
    EndpointCreate,
    EndpointUpdate,
    RegistryCreate,
    SecretCreate,
    SecretUpdate,
    TemplateCreate,
    TemplateUpdate,
)

REST_API = "https://api.runpod.io"
RETRY_STATUSES = {429, 502, 503, 504}
ATTEMPTS = 4
MAX_DETAIL_CHARS = 500
MASK = "[secret]"
MIN_MASKED = 6  # shorter values (`1`, `true`) are no secret, and masking them garbles messages


class RunPodApiError(Exception):
    def __init__(
        self, method: str, path: str, status: int, detail: str, errors: list[str] | None = None
    ) -> None:
        self.status = status
        self.detail = detail
        self.errors = errors or []
        more = f" ({'; '.join(self.errors)})" if self.errors else ""
        super().__init__(f"RunPod answered {status} to {method} {path}: {detail}{more}")


class RunPodNotFound(RunPodApiError):
    """The object does not exist (deleted out of band, or never created)."""


class RunPodRest:
    """One account's control plane: `api_key` opens it, `base_url` is RunPod's (or the local
    RunPod's) host; paths are the spec's, `/v2/...`."""

    def __init__(
        self,
        api_key: str,
        base_url: str = REST_API,
        transport: httpx.BaseTransport | None = None,
        backoff_s: float = 1.0,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(30, connect=10),
            transport=transport,
        )
        self._secrets = {api_key}
        self.backoff_s = backoff_s

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RunPodRest":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(
        self, method: str, path: str, body: Body | None = None, params: dict | None = None
    ) -> Any:
        """One call; 429 and 5xx are retried with backoff except for creates, which are not
        idempotent (a retried POST could make a second endpoint)."""
        payload = None
        if body is not None:
            payload = body.body()
            self._secrets |= {v for v in (payload.get("env") or {}).values() if v}
            self._secrets |= {payload[k] for k in ("password", "value") if payload.get(k)}
        attempts = 1 if method == "POST" else ATTEMPTS
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, json=payload, params=params)
            except httpx.HTTPError as exc:
                if attempt + 1 == attempts:
                    raise RunPodApiError(method, path, 0, f"cannot reach RunPod ({exc})") from exc
            else:
                if response.status_code not in RETRY_STATUSES or attempt + 1 == attempts:
                    break
            time.sleep(self.backoff_s * 2**attempt)
        if response.status_code >= 400:
            error = RunPodNotFound if response.status_code == 404 else RunPodApiError
            raise error(method, path, response.status_code, *self._problem(response))
        return response.json() if response.content else None

    def _problem(self, response: httpx.Response) -> tuple[str, list[str]]:
        """An RFC 9457 problem's detail and errors (or the body's text), secrets masked."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            detail, errors = str(body["detail"]), [str(e) for e in body.get("errors") or []]
        else:
            detail, errors = response.text or response.reason_phrase, []
        return self._mask(detail)[:MAX_DETAIL_CHARS], [self._mask(e) for e in errors]

    def _mask(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if len(secret) >= MIN_MASKED:
                text = text.replace(secret, MASK)
        return text

    def _delete(self, path: str) -> None:
        """Delete; one that is already gone is not an error."""
        with contextlib.suppress(RunPodNotFound):
            self._call("DELETE", path)

    # -- templates ------------------------------------------------------------------------
    def create_template(self, body: TemplateCreate) -> dict[str, Any]:
        return self._call("POST", "/v2/templates", body)

    def get_template(self, template_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v2/templates/{template_id}")

    def list_templates(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v2/templates")["templates"]

    def update_template(self, template_id: str, body: TemplateUpdate) -> dict[str, Any]:
        return self._call("PATCH", f"/v2/templates/{template_id}", body)

    def delete_template(self, template_id: str) -> None:
        self._delete(f"/v2/templates/{template_id}")

    # -- serverless endpoints -------------------------------------------------------------
    def create_endpoint(self, body: EndpointCreate) -> dict[str, Any]:
        return self._call("POST", "/v2/serverless", body)

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v2/serverless/{endpoint_id}")

    def list_endpoints(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v2/serverless")["endpoints"]

    def update_endpoint(self, endpoint_id: str, body: EndpointUpdate) -> dict[str, Any]:
        return self._call("PATCH", f"/v2/serverless/{endpoint_id}", body)

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete the endpoint (its workers stop, its queued jobs are cancelled) and the template
        bound to it."""
        self._delete(f"/v2/serverless/{endpoint_id}")

    def workers(self, endpoint_id: str) -> dict[str, Any]:
        """The endpoint's active workers (`workers`: status, isStale, version, GPU type, data
        centre, uptime) and their `summary` by status."""
        return self._call("GET", f"/v2/serverless/{endpoint_id}/workers")

    def releases(self, endpoint_id: str) -> dict[str, Any]:
        """The endpoint's releases, newest first, and its `rollout` summary."""
        return self._call("GET", f"/v2/serverless/{endpoint_id}/releases")

    def worker_logs(
        self,
        endpoint_id: str,
        worker_id: str,
        tail: int = 100,
        idle_s: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """A worker's last `tail` log lines (`{ts, source, line}`) and the ones that follow, as
        RunPod streams them (Server-Sent Events), until RunPod closes the stream or, with
        `idle_s`, no line came for that long (httpx.ReadTimeout)."""
        path = f"/v2/serverless/{endpoint_id}/workers/{worker_id}/logs"
        timeout = httpx.Timeout(30, read=idle_s)
        with self._http.stream("GET", path, params={"tail": tail}, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                error = RunPodNotFound if response.status_code == 404 else RunPodApiError
                raise error("GET", path, response.status_code, *self._problem(response))
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line.removeprefix("data:").strip())

    # -- registry credentials -------------------------------------------------------------
    def create_registry(self, body: RegistryCreate) -> dict[str, Any]:
        return self._call("POST", "/v2/registries", body)

    def get_registry(self, registry_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v2/registries/{registry_id}")

    def delete_registry(self, registry_id: str) -> None:
        self._delete(f"/v2/registries/{registry_id}")

    # -- account secrets ------------------------------------------------------------------
    def create_secret(self, body: SecretCreate) -> dict[str, Any]:
        return self._call("POST", "/v2/account/secrets", body)

    def list_secrets(self, name: str | None = None) -> list[dict[str, Any]]:
        """The account's secrets (without values), or the one named `name`."""
        params = {"name": name} if name is not None else None
        return self._call("GET", "/v2/account/secrets", params=params)["secrets"]

    def get_secret(self, secret_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v2/account/secrets/{secret_id}")

    def update_secret(self, secret_id: str, body: SecretUpdate) -> dict[str, Any]:
        return self._call("PATCH", f"/v2/account/secrets/{secret_id}", body)

    def delete_secret(self, secret_id: str) -> None:
        self._delete(f"/v2/account/secrets/{secret_id}")

    # -- catalog and billing --------------------------------------------------------------
    def gpus(self, availability: bool = False) -> list[dict[str, Any]]:
        """The GPU catalog: each type's id, serverless `pool`, memory (GB), `price.serverless`
        (USD per hour) and, asked for, its serverless `availability`."""
        params = {"include": "AVAILABILITY", "product": "SERVERLESS"} if availability else None
        return self._call("GET", "/v2/catalog/gpus", params=params)["gpus"]

    def serverless_billing(
        self,
        start: str | None = None,
        end: str | None = None,
        bucket: str = "day",
        endpoint_id: str | None = None,
    ) -> dict[str, Any]:
        """What serverless endpoints cost, per endpoint and time bucket (`records`, USD)."""
        params = {"startTime": start, "endTime": end, "bucketSize": bucket}
        params["serverlessId"] = endpoint_id
        filled = {key: value for key, value in params.items() if value is not None}
        return self._call("GET", "/v2/billing/serverless", params=filled)

    def billed(self, start: datetime, end: datetime) -> dict[str, float]:
        """What each serverless endpoint cost from `start` to `end` (USD, by endpoint id)."""
        iso = "%Y-%m-%dT%H:%M:%SZ"
        records = self.serverless_billing(start.strftime(iso), end.strftime(iso))["records"]
        amounts: dict[str, float] = {}
        for record in records:
            endpoint = record["serverlessId"]
            amounts[endpoint] = amounts.get(endpoint, 0.0) + float(record["totalAmount"])
        return amounts
