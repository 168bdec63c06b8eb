"""The calls Tandem makes to RunPod's control plane: REST API v1 (`https://rest.runpod.io/v1`,
spec in shared/runpod/rest-v1-openapi.json), templates and serverless endpoints.

Errors say what RunPod answered (status and its message), never the API key.
"""

import contextlib
import time
from typing import Any

import httpx

REST_API = "https://rest.runpod.io/v1"
RETRY_STATUSES = {429, 502, 503, 504}
ATTEMPTS = 4
MAX_DETAIL_CHARS = 300


class RunPodApiError(Exception):
    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        self.status = status
        super().__init__(f"RunPod answered {status} to {method} {path}: {detail}")


class RunPodNotFound(RunPodApiError):
    """The template or endpoint does not exist (deleted out of band, or never created)."""


class RunPodRest:
    def __init__(
        self,
        api_key: str,
        base_url: str = REST_API,
        transport: httpx.BaseTransport | None = None,
        backoff_s: float = 1.0,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(30, connect=10),
            transport=transport,
        )
        self.backoff_s = backoff_s

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RunPodRest":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        """One call; 429 and 5xx are retried with backoff except for creates, which are not
        idempotent (a retried POST could make a second endpoint)."""
        attempts = 1 if method == "POST" else ATTEMPTS
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, json=body)
            except httpx.HTTPError as exc:
                if attempt + 1 == attempts:
                    raise RunPodApiError(method, path, 0, f"cannot reach RunPod ({exc})") from exc
            else:
                if response.status_code not in RETRY_STATUSES or attempt + 1 == attempts:
                    break
            time.sleep(self.backoff_s * 2**attempt)
        if response.status_code == 404:
            raise RunPodNotFound(method, path, 404, _detail(response))
        if response.status_code >= 400:
            raise RunPodApiError(method, path, response.status_code, _detail(response))
        return response.json() if response.content else None

    def create_template(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/templates", body)

    def get_template(self, template_id: str) -> dict[str, Any]:
        return self._call("GET", f"/templates/{template_id}")

    def update_template(self, template_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/templates/{template_id}", body)

    def delete_template(self, template_id: str) -> None:
        """Delete; a template that is already gone is not an error."""
        with contextlib.suppress(RunPodNotFound):
            self._call("DELETE", f"/templates/{template_id}")

    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/endpoints", body)

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        return self._call("GET", f"/endpoints/{endpoint_id}")

    def update_endpoint(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/endpoints/{endpoint_id}", body)

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete; an endpoint that is already gone is not an error."""
        with contextlib.suppress(RunPodNotFound):
            self._call("DELETE", f"/endpoints/{endpoint_id}")


def _detail(response: httpx.Response) -> str:
    """RunPod's error message: the `error`/`message` of a JSON body, or the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("error") or body.get("message") or body
    else:
        detail = response.text or response.reason_phrase
    return str(detail)[:MAX_DETAIL_CHARS]
