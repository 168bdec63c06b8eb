"""A local Hugging Face Hub for the deployment tests: the Hub API routes model validation calls,
with the answers the Hub documents (huggingface.co/docs/hub/api: `GET /api/models/{repo_id}`
and its `/revision/{revision}` form, `?blobs=true` for file sizes: `id`, `sha`, `gated` (false,
"auto" or "manual"), `private`, `config` with `architectures`, `siblings` of `{rfilename, size,
blobId}`; `GET /api/models/{repo_id}/tree/{revision}[/{path}]`: `[{type, oid, size, path}]`),
the file downloads a worker makes (`HEAD`/`GET /{repo_id}/resolve/{revision}/{filename}`, with
the `X-Repo-Commit`, `ETag` and `Content-Length` headers `huggingface_hub` reads, and byte
ranges), the agent-harness registry `huggingface_hub` reads (`GET /api/agent-harnesses`), and its
errors as `huggingface_hub` reads them (the `X-Error-Code` header: `RepoNotFound`, `GatedRepo`,
`EntryNotFound`; the `auth-check` route answers 403 GatedRepo to a token without access).

A model is `{config, files: {name: size}, gated, contents: {name: text}}` (`contents`: small files
served, as a diffusers repository's model_index.json; `hosted(directory)` makes one whose files
are a directory's, served), or `{unavailable: True}` for one the Hub answers 503 for (an
outage); tokens in `access` may read the gated ones; `latency_s` delays every answer (the Hub's
distance, in benchmarks). A request no route serves is answered 404 and kept in `unserved`,
which tests assert empty."""

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.net import free_port


class FakeHub:
    def __init__(
        self,
        models: dict[str, dict[str, Any]],
        access: set[str] = frozenset(),
        latency_s: float = 0.0,
    ) -> None:
        self.models = models
        self.access = set(access)
        self.latency_s = latency_s
        self.requests: list[str] = []
        self.unserved: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        repo = "<org>/<name>"
        self.routes = Map(
            [
                Rule(f"/api/models/{repo}", endpoint="info"),
                Rule(f"/api/models/{repo}/revision/<revision>", endpoint="info"),
                Rule(f"/api/models/{repo}/auth-check", endpoint="auth_check"),
                Rule(f"/api/models/{repo}/tree/<revision>", endpoint="tree"),
                Rule(f"/api/models/{repo}/tree/<revision>/<path:path>", endpoint="tree"),
                Rule(f"/{repo}/resolve/<revision>/<path:filename>", endpoint="resolve"),
                Rule("/api/agent-harnesses", endpoint="harnesses"),
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
        time.sleep(self.latency_s)
        self.requests.append(f"{request.method} {request.full_path.rstrip('?')}")
        try:
            endpoint, args = self.routes.bind_to_environ(environ).match()
        except HTTPException:
            self.unserved.append(self.requests[-1])
            return _error(404, "", "Not Found")(environ, start_response)
        if endpoint == "harnesses":  # the registry huggingface_hub reads (its `Registry` type)
            return _json({"standardEnvVars": [], "harnesses": {}})(environ, start_response)
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
        elif endpoint == "tree":
            response = _json(_tree(model, args.get("path", "")))
        elif endpoint == "resolve":
            response = _resolve(repo_id, model, args["filename"], request)
        else:
            response = _json(_info(repo_id, model, request.args.get("blobs") == "true"))
        return response(environ, start_response)


def diffusers_repo(pipeline: str, files: dict[str, float]) -> dict:
    """A diffusers repository: its model_index.json, and files of these sizes (GB)."""
    index = json.dumps({"_class_name": pipeline, "_diffusers_version": "0.30.0"})
    sizes = {name: int(size * 1e9) for name, size in files.items()}
    return {"config": {}, "files": {"model_index.json": len(index), **sizes},
            "contents": {"model_index.json": index}}  # fmt: skip


def hosted(directory: Path) -> dict[str, Any]:
    """A model whose files are `directory`'s (a diffusers pipeline's in their folders)."""
    files = {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    return {"config": config, "files": files, "directory": directory}


def _sha(repo_id: str) -> str:
    return hashlib.sha256(repo_id.encode()).hexdigest()[:40]  # a commit id's length


def _blob_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40]


def _tree(model: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The entries right under `path`: its files, and its folders (`type: directory`)."""
    prefix = f"{path.strip('/')}/" if path.strip("/") else ""
    entries: dict[str, dict[str, Any]] = {}
    for name, size in model["files"].items():
        if not name.startswith(prefix):
            continue
        child, _, rest = name.removeprefix(prefix).partition("/")
        if rest:
            folder = prefix + child
            entries[folder] = {"type": "directory", "oid": _blob_id(folder), "size": 0,
                               "path": folder}  # fmt: skip
        else:
            entries[name] = {"type": "file", "oid": _blob_id(name), "size": size, "path": name}
    return list(entries.values())


def _resolve(repo_id: str, model: dict[str, Any], filename: str, request: Request) -> Response:
    directory = model.get("directory")
    if filename in model.get("contents", {}):
        content = model["contents"][filename].encode()
    elif directory is None or filename not in model["files"]:
        return _error(404, "EntryNotFound", f"{filename} does not exist on the Hub")
    else:
        content = (directory / filename).read_bytes()
    headers = {"X-Repo-Commit": _sha(repo_id), "ETag": f'"{hashlib.sha256(content).hexdigest()}"'}
    # HEAD: the same headers (Content-Length), no body; a Range (safetensors headers): 206.
    response = Response(content, 200, headers)
    return response.make_conditional(request, accept_ranges=True, complete_length=len(content))


def _json(body: Any) -> Response:
    return Response(json.dumps(body), mimetype="application/json")


def _info(repo_id: str, model: dict[str, Any], blobs: bool) -> dict[str, Any]:
    sha = _sha(repo_id)
    siblings = []
    for name, size in model["files"].items():
        sibling: dict[str, Any] = {"rfilename": name}
        if blobs:
            sibling |= {"size": size, "blobId": _blob_id(name)}
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
