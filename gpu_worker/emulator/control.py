"""RunPod's control plane in the emulator: REST API v1 templates, serverless endpoints and
container registry credentials (shared/runpod/rest-v1-openapi.json), held in memory. An
endpoint created here gets a job queue and a worker pool: its template's image, mapped to a
worker module (`--image IMAGE=MODULE`), runs with the template's env, scaled by the endpoint's
workersMin, workersMax and idleTimeout.

Where RunPod's docs say more than the spec, the emulator does what RunPod does:
* An endpoint is deleted only at 0 workers min and max (docs.runpod.io, "Manage endpoints":
  "Delete a Serverless Endpoint": min and max workers must both be set to zero).
* FlashBoot endpoints are named `<name> -fb` (same page: "append -fb to your endpoint's name
  to enable FlashBoot"); `flashboot` itself is accepted and never returned (the spec's Endpoint
  has no such field).
* An unknown id: GET answers 404 "... not found", PATCH and DELETE answer 400 (the responses
  the spec lists for those operations).
* A registry credential's name is unique (the spec: "The name must be unique"), and only its id
  and name are ever returned.
* Account secrets (REST API v2, infra/runpod/rest-v2-secrets-openapi.json): names are unique
  (409), match the documented pattern and do not begin with RUNPOD (422); values are never
  returned; `{{ RUNPOD_SECRET_<name> }}` in a template's env is replaced with the value when a
  worker boots (`boot_env`), so running workers keep the value they booted with.
The emulator also refuses to delete a template that an endpoint uses (the endpoint could not be
served any more; Pulumi deletes the endpoint first), and a template naming a registry
credential that does not exist.
"""

import re
import secrets
import string
from datetime import UTC, datetime
from typing import Any

from infra.runpod.client import spec

FLASHBOOT_SUFFIX = " -fb"
TEMPLATE_DEFAULTS: dict[str, Any] = {
    "category": "NVIDIA",
    "containerDiskInGb": 50,
    "dockerEntrypoint": [],
    "dockerStartCmd": [],
    "env": {},
    "isPublic": False,
    "isRunpod": False,
    "isServerless": False,
    "ports": [],
    "readme": "",
    "volumeInGb": 0,
    "volumeMountPath": "/workspace",
}
ENDPOINT_DEFAULTS: dict[str, Any] = {
    "computeType": "GPU",
    "gpuCount": 1,
    "gpuTypeIds": [],
    "idleTimeout": 5,
    "executionTimeoutMs": 600_000,
    "scalerType": "QUEUE_DELAY",
    "scalerValue": 4,
    "workersMin": 0,
    "workersMax": 3,
}
WRITE_ONLY = ("flashboot",)
SECRET_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.\-/]{0,190}")
SECRET_REFERENCE = re.compile(r"\{\{\s*RUNPOD_SECRET_([a-zA-Z0-9_.\-/]+)\s*\}\}")
USER_ID = "user_emulator"


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _new_id(length: int) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    """A body's set fields: RunPod's update keeps what is left out, and an empty string clears
    an optional id (networkVolumeId, containerRegistryAuthId)."""
    return {key: value for key, value in body.items() if value is not None}


class ControlPlane:
    """Templates and endpoints by id, as RunPod's REST API v1 shows them."""

    def __init__(self) -> None:
        self.templates: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.registry_auths: dict[str, dict[str, Any]] = {}  # with their credentials
        self.secrets: dict[str, dict[str, Any]] = {}  # with their values

    # -- account secrets (REST API v2) ----------------------------------------------------
    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        name, value = body.get("name"), body.get("value")
        if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
            raise ControlError(
                422, "name must start with a letter or _ and hold letters, digits, _.-/"
            )
        if name.upper().startswith("RUNPOD"):
            raise ControlError(422, "names beginning with RUNPOD are reserved")
        if not isinstance(value, str) or not value:
            raise ControlError(422, "value is required")
        if any(secret["name"].lower() == name.lower() for secret in self.secrets.values()):
            raise ControlError(409, f"a secret named {name!r} exists")
        now = _now()
        secret_id = _new_id(12)
        secret = {
            "id": secret_id,
            "name": name,
            "description": body.get("description"),
            "createdAt": now,
            "valueLastUpdatedAt": now,
            "value": value,
        }
        self.secrets[secret_id] = secret
        return self.secret(secret_id)

    def secret(self, secret_id: str) -> dict[str, Any]:
        """A secret as RunPod shows it: everything but its value."""
        if secret_id not in self.secrets:
            raise ControlError(404, "resource not found")
        return {key: value for key, value in self.secrets[secret_id].items() if key != "value"}

    def update_secret(self, secret_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self.secret(secret_id)
        if not body.keys() & {"value", "description"}:
            raise ControlError(422, "give a value, a description or both")
        if "value" in body:
            self.secrets[secret_id] |= {"value": body["value"], "valueLastUpdatedAt": _now()}
        if "description" in body:
            self.secrets[secret_id]["description"] = body["description"] or None
        return self.secret(secret_id)

    def delete_secret(self, secret_id: str) -> None:
        self.secret(secret_id)
        del self.secrets[secret_id]

    def boot_env(self, env: dict[str, Any]) -> dict[str, str]:
        """A template's env as a booting worker gets it: secret references filled in (one to a
        secret that does not exist is left as written)."""
        values = {secret["name"]: secret["value"] for secret in self.secrets.values()}

        def fill(match: re.Match[str]) -> str:
            return values.get(match.group(1), match.group(0))

        return {key: SECRET_REFERENCE.sub(fill, str(value)) for key, value in env.items()}

    # -- container registry credentials ---------------------------------------------------
    def create_registry_auth(self, body: dict[str, Any]) -> dict[str, Any]:
        for key in ("name", "username", "password"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ControlError(400, f"{key} is required")
        if any(auth["name"] == body["name"] for auth in self.registry_auths.values()):
            raise ControlError(400, f"a container registry auth named {body['name']!r} exists")
        auth = {key: body[key] for key in ("name", "username", "password")} | {"id": _new_id(25)}
        self.registry_auths[auth["id"]] = auth
        return self.registry_auth(auth["id"])

    def registry_auth(self, auth_id: str, verb: str = "GET") -> dict[str, Any]:
        """A credential as RunPod shows it: its id and name."""
        if auth_id not in self.registry_auths:
            raise ControlError(*_unknown("container registry auth", auth_id, verb))
        return {key: self.registry_auths[auth_id][key] for key in ("id", "name")}

    def delete_registry_auth(self, auth_id: str) -> None:
        self.registry_auth(auth_id, "DELETE")
        del self.registry_auths[auth_id]

    # -- templates ------------------------------------------------------------------------
    def create_template(self, body: dict[str, Any]) -> dict[str, Any]:
        for key in ("name", "imageName"):
            if not body.get(key):
                raise ControlError(400, f"{key} is required")
        template = {**TEMPLATE_DEFAULTS, **_clean(body), "id": _new_id(10)}
        self._check_template(template)
        self.templates[template["id"]] = template
        return template

    def template(self, template_id: str, verb: str = "GET") -> dict[str, Any]:
        if template_id not in self.templates:
            raise ControlError(*_unknown("template", template_id, verb))
        return self.templates[template_id]

    def update_template(self, template_id: str, body: dict[str, Any]) -> dict[str, Any]:
        template = self.template(template_id, "PATCH")
        self._check_template({**template, **_clean(body)})
        template.update(_clean(body))
        return template

    def _check_template(self, template: dict[str, Any]) -> None:
        auth = template.get("containerRegistryAuthId")
        if auth and auth not in self.registry_auths:
            raise ControlError(400, f"containerRegistryAuthId {auth!r} is not a registry auth")

    def delete_template(self, template_id: str) -> None:
        self.template(template_id, "DELETE")
        users = [e["id"] for e in self.endpoints.values() if e["templateId"] == template_id]
        if users:
            raise ControlError(400, f"template {template_id} is in use by endpoint {users[0]}")
        del self.templates[template_id]

    # -- endpoints ------------------------------------------------------------------------
    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        fields = _clean(body)
        self._check_endpoint(fields)
        endpoint = {
            **ENDPOINT_DEFAULTS,
            "dataCenterIds": _default("dataCenterIds"),  # every data centre, as RunPod fills it
            "name": fields.get("name") or "endpoint",
            **{k: v for k, v in fields.items() if k not in WRITE_ONLY},
            "id": _new_id(14),
            "userId": USER_ID,
            "version": 0,
            "createdAt": _now(),
        }
        self.endpoints[endpoint["id"]] = endpoint
        self._flashboot(endpoint, fields.get("flashboot", False))
        return endpoint

    def endpoint(self, endpoint_id: str, verb: str = "GET") -> dict[str, Any]:
        if endpoint_id not in self.endpoints:
            raise ControlError(*_unknown("endpoint", endpoint_id, verb))
        return self.endpoints[endpoint_id]

    def update_endpoint(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoint(endpoint_id, "PATCH")
        fields = _clean(body)
        self._check_endpoint({**endpoint, **fields})
        flashboot = fields.get("flashboot", endpoint["name"].endswith(FLASHBOOT_SUFFIX))
        endpoint.update({k: v for k, v in fields.items() if k not in WRITE_ONLY})
        endpoint["version"] += 1
        self._flashboot(endpoint, flashboot)
        return endpoint

    def delete_endpoint(self, endpoint_id: str) -> None:
        endpoint = self.endpoint(endpoint_id, "DELETE")
        if endpoint["workersMin"] or endpoint["workersMax"]:
            raise ControlError(
                400,
                "set the endpoint's min and max workers to 0 before deleting it "
                f"(it has {endpoint['workersMin']} min, {endpoint['workersMax']} max)",
            )
        del self.endpoints[endpoint_id]

    def view(self, endpoint: dict[str, Any], template: bool) -> dict[str, Any]:
        """An endpoint as GET answers it: with its template's env, and with includeTemplate,
        the template; an optional id that was cleared is left out."""
        view = {**endpoint, "env": self.templates[endpoint["templateId"]]["env"]}
        if template:
            view["template"] = self.templates[endpoint["templateId"]]
        return {key: value for key, value in view.items() if value != ""}

    def _check_endpoint(self, fields: dict[str, Any]) -> None:
        if fields.get("templateId") not in self.templates:
            raise ControlError(400, f"templateId {fields.get('templateId')!r} is not a template")
        low, high = fields.get("workersMin", 0), fields.get("workersMax", 3)
        if low > high:
            raise ControlError(400, f"workersMin ({low}) must not exceed workersMax ({high})")

    @staticmethod
    def _flashboot(endpoint: dict[str, Any], on: bool) -> None:
        """Name the endpoint as RunPod does: `<name> -fb` while FlashBoot is on."""
        name = endpoint["name"].removesuffix(FLASHBOOT_SUFFIX)
        endpoint["name"] = name + FLASHBOOT_SUFFIX if on else name


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _default(field: str) -> Any:
    """RunPod's default for an endpoint field, from its spec."""
    return spec()["components"]["schemas"]["EndpointCreateInput"]["properties"][field]["default"]


def _unknown(kind: str, item_id: str, verb: str) -> tuple[int, str]:
    if verb == "GET":
        return 404, f"{kind[0].upper()}{kind[1:]} not found."
    return 400, f"Invalid {kind} ID."
