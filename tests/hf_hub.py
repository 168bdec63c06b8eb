"""A local Hugging Face Hub for the deployment tests: the two Hub API routes model validation
calls, with the answers the Hub documents (huggingface.co/docs/hub/api: `GET /api/models/
{repo_id}` and its `/revision/{revision}` form, `?blobs=true` for file sizes: `id`, `sha`,
`gated` (false, "auto" or "manual"), `private`, `config` with `architectures`, `siblings` of
`{rfilename, size, blobId}`), and its errors as `huggingface_hub` reads them (the
`X-Error-Code` header: `RepoNotFound`, `GatedRepo`; the `auth-check` route answers 403 GatedRepo
to a token without access). A model is `{config, files: {name: size}, gated}`, or
`{unavailable: True}` for one the Hub answers 503 for (an outage); tokens in `access` may read
the gated ones."""

import hashlib
import json
import threading
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.net import free_port


class FakeHub:
    def __init__(self, models: dict[str, dict[str, Any]], access: set[str] = frozenset()) -> None:
        self.models = models
        self.access = set(access)
        self.requests: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        repo = "<org>/<name>"
        self.routes = Map(
            [
                Rule(f"/api/models/{repo}", endpoint="info"),
                Rule(f"/api/models/{repo}/revision/<revision>", endpoint="info"),
                Rule(f"/api/models/{repo}/auth-check", endpoint="auth_check"),
            ]
        )

    def __enter__(self) -> "FakeHub":
        self.server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()

    def _wsgi(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append(request.full_path.rstrip("?"))
        endpoint, args = self.routes.bind_to_environ(environ).match()
        repo_id = f"{args['org']}/{args['name']}"
        model = self.models.get(repo_id)
        if model is None:  # the Hub answers 401 (not 404) without a token: no hint it exists
            response = _error(401, "RepoNotFound", "Repository not found")
        elif model.get("unavailable"):
            response = Response("Service Unavailable", 503)
        elif endpoint == "auth_check":
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if model.get("gated") and token not in self.access:
                response = _error(403, "GatedRepo", f"Access to model {repo_id} is restricted.")
            else:
                response = Response(status=200)
        else:
            response = Response(
                json.dumps(_info(repo_id, model, request.args.get("blobs") == "true")),
                mimetype="application/json",
            )
        return response(environ, start_response)


def _info(repo_id: str, model: dict[str, Any], blobs: bool) -> dict[str, Any]:
    sha = hashlib.sha256(repo_id.encode()).hexdigest()[:40]  # a commit id's length
    siblings = []
    for name, size in model["files"].items():
        sibling: dict[str, Any] = {"rfilename": name}
        if blobs:
            sibling |= {"size": size, "blobId": hashlib.sha256(name.encode()).hexdigest()[:40]}
        siblings.append(sibling)
    return {
        "_id": sha[:24],
        "id": repo_id,
        "modelId": repo_id,
        "sha": sha,
        "private": False,
        "gated": model.get("gated", False),
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "config": model["config"],
        "siblings": siblings,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "lastModified": "2026-01-01T00:00:00.000Z",
    }


def _error(status: int, code: str, message: str) -> Response:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    return Response(json.dumps({"error": message}), status, headers, mimetype="application/json")
