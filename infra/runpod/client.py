"""The calls Tandem makes to RunPod's control plane: REST API v1 (`https://rest.runpod.io/v1`,
spec in rest-v1-openapi.json beside this file) for templates, serverless endpoints and container
registry credentials, and REST API v2 (`https://api.runpod.io/v2`, rest-v2-secrets-openapi.json)
for account secrets, which v1 does not have.

Bodies are typed by the spec before they are sent (the Pulumi engine hands providers every
number as a float; RunPod's integer fields take integers). Errors say what RunPod answered
(status and its message) with the API key and every env value of the request masked: RunPod's
error bodies can echo the input. Registry passwords and secret values are masked the same way.
"""

import contextlib
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import httpx

REST_API = "https://rest.runpod.io/v1"
REST_API_V2 = "https://api.runpod.io/v2"
SPEC = Path(__file__).with_name("rest-v1-openapi.json")
SPEC_V2 = Path(__file__).with_name("rest-v2-secrets-openapi.json")
RETRY_STATUSES = {429, 502, 503, 504}
ATTEMPTS = 4
MAX_DETAIL_CHARS = 300
MASK = "[secret]"


class RunPodApiError(Exception):
    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        self.status = status
        super().__init__(f"RunPod answered {status} to {method} {path}: {detail}")


class RunPodNotFound(RunPodApiError):
    """The object does not exist (deleted out of band, or never created)."""


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC.read_text())


@cache
def spec_v2() -> dict[str, Any]:
    return json.loads(SPEC_V2.read_text())


def typed(schema: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with the fields that `schema` (a schema of the spec) types as integers made ints."""
    properties = spec()["components"]["schemas"][schema]["properties"]
    return {
        key: int(value)
        if properties.get(key, {}).get("type") == "integer" and isinstance(value, float)
        else value
        for key, value in body.items()
    }


class RunPodRest:
    def __init__(
        self,
        api_key: str,
        base_url: str = REST_API,
        transport: httpx.BaseTransport | None = None,
        backoff_s: float = 1.0,
        v2_url: str = REST_API_V2,
    ) -> None:
        """`base_url`: REST API v1; `v2_url`: REST API v2 (secrets)."""
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(30, connect=10),
            transport=transport,
        )
        self._secrets = {api_key}
        self.backoff_s = backoff_s
        self._secrets_url = f"{v2_url.rstrip('/')}/account/secrets"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RunPodRest":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        """One call; 429 and 5xx are retried with backoff except for creates, which are not
        idempotent (a retried POST could make a second endpoint)."""
        if body is not None:
            self._secrets |= {str(v) for v in (body.get("env") or {}).values() if v}
            self._secrets |= {body[k] for k in ("password", "value") if body.get(k)}
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
            raise RunPodNotFound(method, path, 404, self._detail(response))
        if response.status_code >= 400:
            raise RunPodApiError(method, path, response.status_code, self._detail(response))
        return response.json() if response.content else None

    def _detail(self, response: httpx.Response) -> str:
        """RunPod's error message (the `error`/`message` of a JSON body, or the text), secrets
        masked."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):  # v1: error or message; v2: a problem's detail
            detail = str(body.get("error") or body.get("message") or body.get("detail") or body)
        else:
            detail = response.text or response.reason_phrase
        for secret in sorted(self._secrets, key=len, reverse=True):
            detail = detail.replace(secret, MASK)
        return detail[:MAX_DETAIL_CHARS]

    def _gone_after(self, exc: RunPodApiError, kind: str, item_id: str) -> bool:
        """Whether a 4xx answer meant "already gone": RunPod answers a PATCH or DELETE of an
        unknown id with 400 ("Invalid ... ID", per its spec), so a GET decides."""
        if not 400 <= exc.status < 500:
            return False
        try:
            self._call("GET", f"/{kind}/{item_id}")
        except RunPodNotFound:
            return True
        return False

    def _delete(self, kind: str, item_id: str) -> None:
        """Delete; one that is already gone is not an error."""
        try:
            self._call("DELETE", f"/{kind}/{item_id}")
        except RunPodApiError as exc:
            if not self._gone_after(exc, kind, item_id):
                raise

    def create_template(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/templates", typed("TemplateCreateInput", body))

    def get_template(self, template_id: str) -> dict[str, Any]:
        return self._call("GET", f"/templates/{template_id}")

    def list_templates(self) -> list[dict[str, Any]]:
        """The account's own templates, those bound to an endpoint included."""
        return self._call("GET", "/templates?includeEndpointBoundTemplates=true")

    def update_template(self, template_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/templates/{template_id}", typed("TemplateUpdateInput", body))

    def delete_template(self, template_id: str) -> None:
        self._delete("templates", template_id)

    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/endpoints", typed("EndpointCreateInput", body))

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        return self._call("GET", f"/endpoints/{endpoint_id}")

    def list_endpoints(self) -> list[dict[str, Any]]:
        return self._call("GET", "/endpoints")

    def update_endpoint(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/endpoints/{endpoint_id}", typed("EndpointUpdateInput", body))

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Scale the endpoint to zero workers, then delete it: RunPod deletes only endpoints
        whose min and max workers are 0 (docs.runpod.io, "Manage endpoints": "Delete a
        Serverless Endpoint")."""
        try:
            self.update_endpoint(endpoint_id, {"workersMin": 0, "workersMax": 0})
        except RunPodApiError as exc:
            if self._gone_after(exc, "endpoints", endpoint_id):
                return
            raise
        self._delete("endpoints", endpoint_id)

    def create_registry_auth(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/containerregistryauth", body)

    def get_registry_auth(self, auth_id: str) -> dict[str, Any]:
        return self._call("GET", f"/containerregistryauth/{auth_id}")

    def delete_registry_auth(self, auth_id: str) -> None:
        self._delete("containerregistryauth", auth_id)

    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", self._secrets_url, body)

    def get_secret(self, secret_id: str) -> dict[str, Any]:
        return self._call("GET", f"{self._secrets_url}/{secret_id}")

    def update_secret(self, secret_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"{self._secrets_url}/{secret_id}", body)

    def delete_secret(self, secret_id: str) -> None:
        """Delete; one that is already gone (v2 answers 404) is not an error."""
        with contextlib.suppress(RunPodNotFound):
            self._call("DELETE", f"{self._secrets_url}/{secret_id}")
