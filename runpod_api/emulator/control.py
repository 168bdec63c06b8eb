"""RunPod's control plane in the local RunPod: REST API v2's serverless endpoints, templates,
registry credentials, account secrets, GPU catalog, releases and serverless billing, held in
memory. Bodies reach it checked against the spec (server.py); this module adds what the spec
documents in words:
* An endpoint's container settings come from its `templateId` (resolved once, at create: later
  template edits do not affect it) overlaid by the body's; `image` is needed from one of them.
  The template is then bound to the endpoint: it cannot be deleted (400) and goes with it.
* A PATCH that changes the container (image, env, disk, registry, args, ports) makes a new
  release (version + 1, with its diff) that rolls the workers; other fields apply at once.
* `gpu.pools` are the catalog's pools; `gpu.excludedTypes` must leave a type in the selection.
* Unknown ids answer 404; a registry's and a secret's names are unique (409 for secrets, as
  their pages say; 400 for registries); values and passwords are never returned.
* `{{ RUNPOD_SECRET_<name> }}` in an endpoint's env is replaced with the secret's value when a
  worker boots (`boot_env`), so running workers keep the value they booted with.
"""

import copy
import re
import secrets
import string
from datetime import UTC, datetime
from typing import Any

from runpod_api.catalog import snapshot

CONTAINER = ("image", "args", "disk", "ports", "env", "registry")
CONTAINER_DEFAULTS: dict[str, Any] = {"args": "", "disk": 20, "ports": [], "env": {}}
TEMPLATE_DEFAULTS: dict[str, Any] = {
    **CONTAINER_DEFAULTS,
    "registry": None,
    "mounts": {},
    "serverless": False,
    "public": False,
    "category": "NVIDIA",
    "startSsh": True,
    "startJupyter": True,
    "allowedCudaVersions": [],
}
WORKERS_DEFAULTS = {"min": 0, "max": 3, "idleTimeout": 10}
SECRET_REFERENCE = re.compile(r"\{\{\s*RUNPOD_SECRET_([a-zA-Z0-9_.\-/]+)\s*\}\}")
JOB_ROUTES = {
    "run": "/run",
    "runSync": "/runsync",
    "status": "/status/{job_id}",
    "stream": "/stream/{job_id}",
    "cancel": "/cancel/{job_id}",
    "retry": "/retry/{job_id}",
    "purgeQueue": "/purge-queue",
    "health": "/health",
}


class ControlError(Exception):
    """A refusal: an RFC 9457 problem with `status`, its detail and, optionally, `errors`."""

    def __init__(self, status: int, detail: str, errors: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.errors = errors or []


def new_id(length: int = 8) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ControlPlane:
    """One RunPod account's objects by id, as REST API v2 shows them. `base_url` is where the
    endpoints' job API is served (their `requestUrls`)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.templates: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.bound: dict[str, str] = {}  # endpoint id -> the template bound to it
        self.releases: dict[str, list[dict[str, Any]]] = {}  # endpoint id -> newest first
        self.registries: dict[str, dict[str, Any]] = {}  # with their credentials
        self.secrets: dict[str, dict[str, Any]] = {}  # with their values
        self.started_at = now()  # the start of its billing
        # The GPU catalog (the dated snapshot's); tests set a type's `availability`.
        self.gpus: list[dict[str, Any]] = copy.deepcopy(snapshot()["gpus"])
        for gpu in self.gpus:
            gpu.setdefault("availability", "HIGH")

    # -- catalog --------------------------------------------------------------------------
    def catalog(self, availability: bool) -> list[dict[str, Any]]:
        if availability:
            return copy.deepcopy(self.gpus)
        return [{k: v for k, v in gpu.items() if k != "availability"} for gpu in self.gpus]

    def set_availability(self, pool: str, level: str) -> None:
        """Every type of `pool` at `level` (NONE: no capacity, workers are not placed)."""
        for gpu in self.gpus:
            if gpu["pool"] == pool:
                gpu["availability"] = level

    def placement(self, endpoint: dict[str, Any]) -> dict[str, Any] | None:
        """The GPU type a new worker of the endpoint gets: the first selected type with capacity
        (None: none has, the worker is not placed)."""
        gpu = endpoint["gpu"]
        for pool in gpu["pools"]:
            for item in self.gpus:
                if (
                    item["pool"] == pool
                    and item["id"] not in gpu.get("excludedTypes", [])
                    and item["availability"] != "NONE"
                ):
                    return item
        return None

    def _check_gpu(self, gpu: dict[str, Any]) -> None:
        known = {item["pool"] for item in self.gpus}
        unknown = [pool for pool in gpu["pools"] if pool not in known]
        if unknown:
            raise ControlError(
                400, f"gpu.pools: {unknown[0]!r} is not a serverless pool", sorted(known)
            )
        left = [
            item
            for item in self.gpus
            if item["pool"] in gpu["pools"] and item["id"] not in gpu.get("excludedTypes", [])
        ]
        if not left:
            raise ControlError(400, "gpu.excludedTypes leaves no GPU type in the selected pools")

    # -- account secrets ------------------------------------------------------------------
    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["name"]
        if name.upper().startswith("RUNPOD"):
            raise ControlError(422, "names beginning with RUNPOD are reserved", ["name"])
        if any(secret["name"].lower() == name.lower() for secret in self.secrets.values()):
            raise ControlError(409, f"a secret named {name!r} exists")
        stamp = now()
        secret_id = new_id(12)
        self.secrets[secret_id] = {
            "id": secret_id,
            "name": name,
            "description": body.get("description"),
            "createdAt": stamp,
            "valueLastUpdatedAt": stamp,
            "value": body["value"],
        }
        return self.secret(secret_id)

    def secret(self, secret_id: str) -> dict[str, Any]:
        """A secret as RunPod shows it: everything but its value."""
        if secret_id not in self.secrets:
            raise ControlError(404, f"secret {secret_id} not found")
        return {key: value for key, value in self.secrets[secret_id].items() if key != "value"}

    def update_secret(self, secret_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self.secret(secret_id)
        if "value" in body:
            self.secrets[secret_id] |= {"value": body["value"], "valueLastUpdatedAt": now()}
        if "description" in body:
            self.secrets[secret_id]["description"] = body["description"] or None
        return self.secret(secret_id)

    def delete_secret(self, secret_id: str) -> None:
        self.secret(secret_id)
        del self.secrets[secret_id]

    def boot_env(self, env: dict[str, str]) -> dict[str, str]:
        """An env as a booting worker gets it: secret references filled in (one to a secret
        that does not exist is left as written)."""
        values = {secret["name"]: secret["value"] for secret in self.secrets.values()}

        def fill(match: re.Match[str]) -> str:
            return values.get(match.group(1), match.group(0))

        return {key: SECRET_REFERENCE.sub(fill, value) for key, value in env.items()}

    # -- registry credentials -------------------------------------------------------------
    def create_registry(self, body: dict[str, Any]) -> dict[str, Any]:
        if any(item["name"] == body["name"] for item in self.registries.values()):
            raise ControlError(400, f"a registry credential named {body['name']!r} exists")
        registry_id = new_id(25)
        self.registries[registry_id] = {**body, "id": registry_id}
        return self.registry(registry_id)

    def registry(self, registry_id: str) -> dict[str, Any]:
        """A credential as RunPod shows it: its id and name."""
        if registry_id not in self.registries:
            raise ControlError(404, f"registry {registry_id} not found")
        return {key: self.registries[registry_id][key] for key in ("id", "name")}

    def delete_registry(self, registry_id: str) -> None:
        self.registry(registry_id)
        del self.registries[registry_id]

    def _check_registry(self, container: dict[str, Any]) -> None:
        registry = container.get("registry")
        if registry and registry not in self.registries:
            raise ControlError(400, f"registry {registry!r} is not a registry credential")

    # -- templates ------------------------------------------------------------------------
    def create_template(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_registry(body)
        template = {**TEMPLATE_DEFAULTS, **body, "id": new_id(10)}
        self.templates[template["id"]] = template
        return template

    def template(self, template_id: str) -> dict[str, Any]:
        if template_id not in self.templates:
            raise ControlError(404, f"template {template_id} not found")
        return self.templates[template_id]

    def update_template(self, template_id: str, body: dict[str, Any]) -> dict[str, Any]:
        template = self.template(template_id)
        self._check_registry({**template, **body})
        template.update(body)
        return template

    def delete_template(self, template_id: str) -> None:
        self.template(template_id)
        users = [endpoint for endpoint, bound in self.bound.items() if bound == template_id]
        if users:
            raise ControlError(400, f"template {template_id} is bound to endpoint {users[0]}")
        del self.templates[template_id]

    # -- serverless endpoints -------------------------------------------------------------
    def create_endpoint(self, body: dict[str, Any], endpoint_id: str | None = None) -> dict:
        """Make an endpoint (`endpoint_id`: the id of a fixed one, else a new id)."""
        if ("gpu" in body) == ("cpu" in body):
            raise ControlError(400, "give exactly one of gpu and cpu")
        if "cpu" in body:
            raise ControlError(400, "CPU endpoints are not served by the local RunPod")
        fields = dict(body)
        template_id = fields.pop("templateId", None)
        base = {**CONTAINER_DEFAULTS, "registry": None}
        if template_id is not None:
            template = self.template(template_id)
            base |= {key: copy.deepcopy(template[key]) for key in CONTAINER}
        container = base | {key: fields.pop(key) for key in CONTAINER if key in fields}
        self._check_registry(container)
        self._check_gpu(fields["gpu"])
        endpoint_id = endpoint_id or new_id(14)
        endpoint = {
            "id": endpoint_id,
            "name": fields.pop("name"),
            "type": fields.pop("type"),
            "requestUrls": {
                key: f"{self.base_url}/v2/{endpoint_id}{route}" for key, route in JOB_ROUTES.items()
            },
            **container,
            "gpu": _gpu_view(fields.pop("gpu")),
            "workers": {**WORKERS_DEFAULTS, **fields.pop("workers", {})},
            "scaling": fields.pop("scaling"),
            "dataCenterIds": fields.pop("dataCenterIds", []),
            "networkVolumes": fields.pop("networkVolumes", []),
            "timeout": fields.pop("timeout", 300_000),
            "flashboot": fields.pop("flashboot", "OFF"),
            "createdAt": now(),
        }
        self._check_workers(endpoint["workers"])
        self.endpoints[endpoint_id] = endpoint
        if template_id is not None:
            self.bound[endpoint_id] = template_id
        self.releases[endpoint_id] = [_release(1, [])]
        return endpoint

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        if endpoint_id not in self.endpoints:
            raise ControlError(404, f"serverless endpoint {endpoint_id} not found")
        return self.endpoints[endpoint_id]

    def version(self, endpoint_id: str) -> int:
        return self.releases[endpoint_id][0]["version"]

    def update_endpoint(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a PATCH; a changed container makes a release."""
        endpoint = self.endpoint(endpoint_id)
        fields = dict(body)
        if "cpu" in fields:
            raise ControlError(400, "cpu on a GPU endpoint: the compute family is immutable")
        if template_id := fields.pop("templateId", None):
            template = self.template(template_id)
            fields = {key: copy.deepcopy(template[key]) for key in CONTAINER} | fields
            self.bound[endpoint_id] = template_id
        if "gpu" in fields:
            fields["gpu"] = _gpu_view(endpoint["gpu"] | fields["gpu"])
            self._check_gpu(fields["gpu"])
        if "workers" in fields:
            fields["workers"] = endpoint["workers"] | fields["workers"]
            self._check_workers(fields["workers"])
        self._check_registry(endpoint | fields)
        diff = [
            {"field": key, "old": endpoint.get(key), "new": value}
            for key, value in fields.items()
            if key in CONTAINER and endpoint.get(key) != value
        ]
        endpoint.update(fields)
        if diff:
            version = self.version(endpoint_id) + 1
            self.releases[endpoint_id].insert(0, _release(version, diff))
        return endpoint

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete the endpoint and the template bound to it."""
        self.endpoint(endpoint_id)
        del self.endpoints[endpoint_id]
        self.releases.pop(endpoint_id, None)
        template_id = self.bound.pop(endpoint_id, None)
        if template_id is not None and template_id not in self.bound.values():
            self.templates.pop(template_id, None)

    @staticmethod
    def _check_workers(workers: dict[str, int]) -> None:
        if workers["min"] > workers["max"]:
            raise ControlError(
                400,
                f"workers.min ({workers['min']}) must not exceed workers.max ({workers['max']})",
            )


def _gpu_view(gpu: dict[str, Any]) -> dict[str, Any]:
    return {"count": 1, "allowedCudaVersions": [], "minCudaVersion": None} | gpu


def _release(version: int, diff: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": new_id(8),
        "version": version,
        "source": "MANUAL",
        "buildId": None,
        "createdByUserId": None,
        "workerCount": 0,
        "createdAt": now(),
        "diff": diff,
    }
