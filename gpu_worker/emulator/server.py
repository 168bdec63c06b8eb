"""The emulator's HTTP server: RunPod's control plane (REST API v1, `/v1`, and v2's account
secrets, `/v2/account/secrets`), its public job API (`/v2/{endpoint_id}`, with the OpenAI
passthrough `/v2/{endpoint_id}/openai/v1/...`) and the routes its workers poll."""

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from gpu_worker.emulator.control import ControlError, ControlPlane
from gpu_worker.emulator.jobs import COMPLETED, FINAL, Endpoint, Job
from gpu_worker.emulator.workers import Pool

DEFAULT_RUNSYNC_WAIT_MS = 90_000
STREAM_POLL_S = 1.0  # how long /stream holds a request open for new chunks
WORKER_POLL_S = 2.0  # how long job-take and job-stop hold a worker's request open
SCALE_EVERY_S = 0.2  # how often the worker pools are scaled
V2_ACCOUNT = "/v2/account"  # REST API v2's account routes (beside the job API's /v2/{id})


class Emulator:
    """The emulator's state: job queues and worker pools by endpoint id, the control plane,
    the API keys it accepts (a set, so a test can rotate them), the image -> module map, the
    private registries (host -> the username and password that pull from it) and variables the
    machine gives every worker of an endpoint made through /v1 (its template's env wins)."""

    def __init__(
        self,
        base_url: str,
        images: dict[str, str],
        api_key: str | None,
        registries: dict[str, tuple[str, str]] | None = None,
        machine_env: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.images = images
        self.registries = registries or {}
        self.machine_env = machine_env or {}
        self.api_keys = {api_key} if api_key else set()
        self.control = ControlPlane()
        self.queues: dict[str, Endpoint] = {}
        self.pools: dict[str, Pool] = {}

    def add_endpoint(self, endpoint_id: str, timeout_s: float | None) -> Pool:
        queue = Endpoint(endpoint_id, timeout_s)
        self.queues[endpoint_id] = queue
        self.pools[endpoint_id] = pool = Pool(queue, self.base_url)
        return pool

    def apply(self, endpoint: dict[str, Any]) -> None:
        """(Re)configure the queue and the workers of an endpoint made through /v1."""
        template = self.control.templates[endpoint["templateId"]]
        pool = self.pools.get(endpoint["id"]) or self.add_endpoint(endpoint["id"], None)
        pool.queue.execution_timeout_s = endpoint["executionTimeoutMs"] / 1000
        env = self.machine_env | self.control.boot_env(template["env"])
        pool.configure(
            self.images.get(template["imageName"]) if self.can_pull(template) else None,
            env,
            endpoint["workersMin"],
            endpoint["workersMax"],
            endpoint["idleTimeout"],
        )

    def can_pull(self, template: dict[str, Any]) -> bool:
        """Whether a worker can pull the template's image: one from a private registry only
        with a registry credential holding that registry's username and password."""
        host = template["imageName"].split("/", 1)[0]
        if host not in self.registries:
            return True
        auth = self.control.registry_auths.get(template.get("containerRegistryAuthId") or "")
        return auth is not None and (auth["username"], auth["password"]) == self.registries[host]

    async def remove(self, endpoint_id: str) -> None:
        del self.queues[endpoint_id]
        await self.pools.pop(endpoint_id).close()


def create_app(
    endpoints: dict[str, str],
    base_url: str,
    *,
    api_key: str | None = None,
    execution_timeout_s: float | None = None,
    endpoint_env: dict[str, dict[str, str]] | None = None,
    images: dict[str, str] | None = None,
    registries: dict[str, tuple[str, str]] | None = None,
    machine_env: dict[str, str] | None = None,
) -> FastAPI:
    """`endpoints` maps names of fixed endpoints (one worker each, always on) to worker
    modules; `base_url` is where workers reach us; `endpoint_env` adds variables to one fixed
    endpoint's workers (as a RunPod template's env); `images` maps the image names of templates
    made through /v1 to worker modules; `registries` makes registry hosts private (see
    `Emulator.can_pull`); `machine_env` goes to the workers of those endpoints."""
    state = Emulator(base_url, images or {}, api_key, registries, machine_env)
    for name, module in endpoints.items():
        state.add_endpoint(name, execution_timeout_s).configure(
            module, (endpoint_env or {}).get(name, {}), 1, 1
        )

    async def scale_forever() -> None:
        while True:
            for pool in list(state.pools.values()):
                pool.scale()
            await asyncio.sleep(SCALE_EVERY_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scaler = asyncio.create_task(scale_forever())
        try:
            yield
        finally:
            scaler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scaler
            await asyncio.gather(*(pool.close() for pool in state.pools.values()))

    def endpoint_of(endpoint_id: str) -> Endpoint:
        if endpoint_id not in state.queues:
            raise HTTPException(404, f"endpoint {endpoint_id} not found")
        return state.queues[endpoint_id]

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if not state.api_keys:
            return
        given = (authorization or "").removeprefix("Bearer ").strip().encode()
        if not any(hmac.compare_digest(given, key.encode()) for key in state.api_keys):
            raise HTTPException(401, "Unauthorized")

    def job_of(endpoint: Endpoint, job_id: str) -> Job:
        job = endpoint.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "request does not exist")
        return job

    EndpointDep = Annotated[Endpoint, Depends(endpoint_of)]
    public = APIRouter(prefix="/v2/{endpoint_id}", dependencies=[Depends(authorized)])

    async def submit(request: Request, endpoint: Endpoint, source: str) -> Job:
        body = await _body(request)
        if "input" not in body:
            raise HTTPException(400, 'request body must be {"input": ...}')
        policy = body.get("policy") or {}
        webhook = body.get("webhook") if source == "run" else None
        return endpoint.submit(body["input"], source, policy.get("executionTimeout"), webhook)

    @public.post("/run")
    async def run(request: Request, endpoint: EndpointDep) -> dict[str, Any]:
        job = await submit(request, endpoint, "run")
        return {"id": job.id, "status": job.status}

    @public.post("/runsync")
    async def runsync(
        request: Request,
        endpoint: EndpointDep,
        wait: Annotated[int, Query(ge=1000, le=300_000)] = DEFAULT_RUNSYNC_WAIT_MS,
    ) -> dict[str, Any]:
        job = await submit(request, endpoint, "runsync")
        await endpoint.wait_until(lambda: job.status in FINAL, wait / 1000)
        return job.view()

    @public.api_route("/status/{job_id}", methods=["GET", "POST"])
    async def status(endpoint: EndpointDep, job_id: str) -> dict[str, Any]:
        return job_of(endpoint, job_id).view()

    @public.api_route("/stream/{job_id}", methods=["GET", "POST"])
    async def stream(endpoint: EndpointDep, job_id: str) -> dict[str, Any]:
        job = job_of(endpoint, job_id)
        await endpoint.wait_until(
            lambda: job.status in FINAL or len(job.stream) > job.stream_sent, STREAM_POLL_S
        )
        chunks = endpoint.take_stream(job)
        body = {"id": job.id, "status": job.status, "stream": [{"output": c} for c in chunks]}
        if job.error is not None:
            body["error"] = job.error
        return body

    @public.post("/cancel/{job_id}")
    async def cancel(endpoint: EndpointDep, job_id: str) -> dict[str, Any]:
        job = job_of(endpoint, job_id)
        endpoint.cancel(job)
        return {"id": job.id, "status": job.status}

    @public.post("/retry/{job_id}")
    async def retry(endpoint: EndpointDep, job_id: str) -> dict[str, Any]:
        job = job_of(endpoint, job_id)
        if not endpoint.retry(job):
            raise HTTPException(
                400, f"job is {job.status}; only failed, cancelled or timed-out jobs can be retried"
            )
        return {"id": job.id, "status": job.status}

    @public.post("/purge-queue")
    async def purge_queue(endpoint: EndpointDep) -> dict[str, Any]:
        return {"removed": endpoint.purge_queue(), "status": "completed"}

    @public.api_route("/openai/v1/{route:path}", methods=["GET", "POST"])
    async def openai(request: Request, endpoint: EndpointDep, route: str) -> Response:
        """RunPod's OpenAI-compatible passthrough: the request becomes the job input
        `{"openai_route": "/v1/<route>", "openai_input": <body>}`; the worker's output is the
        answer, its string chunks the event stream when the request asks for `stream`."""
        body = await _body(request) if request.method == "POST" else {}
        job_input = {"openai_route": f"/v1/{route}", "openai_input": body}
        job = endpoint.submit(job_input, "runsync", None)
        if body.get("stream") is True:
            return StreamingResponse(_events(endpoint, job), media_type="text/event-stream")
        await endpoint.wait_until(lambda: job.status in FINAL, DEFAULT_RUNSYNC_WAIT_MS / 1000)
        if job.status != COMPLETED:
            return _openai_failure(job)
        output = job.output  # a generator handler's items (return_aggregate_stream)
        return JSONResponse(output[-1] if isinstance(output, list) and output else output)

    @public.get("/health")
    async def health(endpoint: EndpointDep) -> dict[str, Any]:
        return {"jobs": endpoint.counts_view(), "workers": state.pools[endpoint.name].health()}

    # The routes below are the ones the runpod SDK's job loop calls (RUNPOD_WEBHOOK_*).
    internal = APIRouter(prefix="/v2/{endpoint_id}", include_in_schema=False)

    def jobs_response(jobs: list[Job], batch: bool) -> Response:
        if not jobs:
            return Response(status_code=204)
        payload = [{"id": j.id, "input": j.input} for j in jobs]
        return JSONResponse(payload if batch else payload[0])

    async def take(request: Request, endpoint: Endpoint, worker_id: str, count: int) -> list[Job]:
        await endpoint.wait_until(lambda: bool(endpoint.queue), WORKER_POLL_S)
        if worker_id not in state.pools[endpoint.name].workers:
            return []  # a worker being stopped (scaled down, or an old release) takes no job
        if await request.is_disconnected():
            return []  # the poll of a worker that died meanwhile: its job would be lost
        return endpoint.take(worker_id, count)

    @internal.get("/job-take/{worker_id}")
    async def job_take(request: Request, endpoint: EndpointDep, worker_id: str) -> Response:
        return jobs_response(await take(request, endpoint, worker_id, 1), batch=False)

    @internal.get("/job-take-batch/{worker_id}")
    async def job_take_batch(
        request: Request,
        endpoint: EndpointDep,
        worker_id: str,
        batch_size: Annotated[int, Query(ge=1)] = 1,
    ) -> Response:
        return jobs_response(await take(request, endpoint, worker_id, batch_size), batch=True)

    async def report(request: Request) -> dict[str, Any]:
        # The SDK posts JSON text with a form content type.
        body = json.loads(await request.body())
        if not isinstance(body, dict):
            raise HTTPException(400, "job report must be a JSON object")
        return body

    @internal.post("/job-done/{worker_id}/{job_id}")
    async def job_done(request: Request, endpoint: EndpointDep, job_id: str) -> dict[str, Any]:
        endpoint.done(job_id, await report(request))
        return {}

    @internal.post("/job-stream/{worker_id}/{job_id}")
    async def job_stream(request: Request, endpoint: EndpointDep, job_id: str) -> dict[str, Any]:
        endpoint.add_stream(job_id, (await report(request)).get("output"))
        return {}

    @internal.get("/job-stop/{worker_id}")
    async def job_stop(endpoint: EndpointDep, worker_id: str) -> Response:
        await endpoint.wait_until(lambda: bool(endpoint.to_stop.get(worker_id)), WORKER_POLL_S)
        job_ids = endpoint.stop_signals(worker_id)
        return JSONResponse({"jobsToStop": job_ids}) if job_ids else Response(status_code=204)

    app = FastAPI(title="Tandem RunPod emulator", lifespan=lifespan)
    app.state.emulator = state

    @app.exception_handler(HTTPException)
    async def _error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(ControlError)
    async def _control_error(request: Request, exc: ControlError) -> JSONResponse:
        return _error_response(request, exc.status, str(exc))

    app.include_router(control_routes(state, authorized))
    app.include_router(secret_routes(state.control, authorized))
    app.include_router(public)
    app.include_router(internal)
    return app


async def _events(endpoint: Endpoint, job: Job) -> AsyncIterator[str]:
    """A streamed OpenAI answer: the worker's chunks as they arrive (each holds whole
    `data: ...` events); a failure after the start, as one last event holding the error."""
    sent = 0
    while True:
        await endpoint.wait_until(
            lambda seen=sent: job.status in FINAL or len(job.stream) > seen, 1.0
        )
        final = job.status in FINAL  # no chunk is added after the end
        for chunk in job.stream[sent:]:
            yield chunk if isinstance(chunk, str) else f"data: {json.dumps(chunk)}\n\n"
        sent = len(job.stream)
        if final:
            if job.status != COMPLETED:
                yield f"data: {bytes(_openai_failure(job).body).decode()}\n\n"
            return


def _openai_failure(job: Job) -> JSONResponse:
    """A failed OpenAI job as an HTTP answer: the worker's OpenAI error (its JSON text, whose
    `code` is the status) or, for any other failure, a 500 in OpenAI's error shape."""
    try:
        body = json.loads(job.error)
        status = int(body["error"]["code"])
    except (TypeError, ValueError, KeyError):
        message = f"job {job.id} {job.status.lower()}: {job.error or 'no output'}"
        body = {"error": {"message": message, "type": "InternalServerError", "code": 500}}
        status = 500
    return JSONResponse(body, status)


def _error_response(request: Request, status: int, message: str) -> JSONResponse:
    """An error as RunPod answers it: `{"error"}` (v1, job API), a problem detail (v2)."""
    if request.url.path.startswith(V2_ACCOUNT):
        problem = {"title": HTTPStatus(status).phrase, "status": status, "detail": message}
        return JSONResponse(problem, status, media_type="application/problem+json")
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "request body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "request body must be a JSON object")
    return body


def secret_routes(control: ControlPlane, authorized: Any) -> APIRouter:
    """RunPod's REST API v2 for account secrets (errors as problem details)."""
    v2 = APIRouter(prefix=f"{V2_ACCOUNT}/secrets", dependencies=[Depends(authorized)])

    @v2.get("")
    async def list_secrets(name: str | None = None) -> dict[str, Any]:
        found = [control.secret(secret_id) for secret_id in control.secrets]
        return {"secrets": [s for s in found if name is None or s["name"].lower() == name.lower()]}

    @v2.post("", status_code=201)
    async def create_secret(request: Request) -> dict[str, Any]:
        return control.create_secret(await _body(request))

    @v2.get("/{secret_id}")
    async def get_secret(secret_id: str) -> dict[str, Any]:
        return control.secret(secret_id)

    @v2.patch("/{secret_id}")
    async def update_secret(secret_id: str, request: Request) -> dict[str, Any]:
        return control.update_secret(secret_id, await _body(request))

    @v2.delete("/{secret_id}", status_code=204)
    async def delete_secret(secret_id: str) -> Response:
        control.delete_secret(secret_id)
        return Response(status_code=204)

    return v2


def control_routes(state: Emulator, authorized: Any) -> APIRouter:
    """RunPod's REST API v1 for templates, serverless endpoints and container registry
    credentials (`POST .../update` is the spec's alias of PATCH)."""
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])
    control = state.control

    @v1.post("/containerregistryauth")
    async def create_registry_auth(request: Request) -> dict[str, Any]:
        return control.create_registry_auth(await _body(request))

    @v1.get("/containerregistryauth")
    async def list_registry_auths() -> list[dict[str, Any]]:
        return [control.registry_auth(auth_id) for auth_id in control.registry_auths]

    @v1.get("/containerregistryauth/{auth_id}")
    async def get_registry_auth(auth_id: str) -> dict[str, Any]:
        return control.registry_auth(auth_id)

    @v1.delete("/containerregistryauth/{auth_id}", status_code=204)
    async def delete_registry_auth(auth_id: str) -> Response:
        control.delete_registry_auth(auth_id)
        return Response(status_code=204)

    @v1.post("/templates")
    async def create_template(request: Request) -> dict[str, Any]:
        return control.create_template(await _body(request))

    @v1.get("/templates")
    async def list_templates() -> list[dict[str, Any]]:
        return list(control.templates.values())

    @v1.get("/templates/{template_id}")
    async def get_template(template_id: str) -> dict[str, Any]:
        return control.template(template_id)

    @v1.patch("/templates/{template_id}")
    @v1.post("/templates/{template_id}/update")
    async def update_template(template_id: str, request: Request) -> dict[str, Any]:
        template = control.update_template(template_id, await _body(request))
        for endpoint in control.endpoints.values():
            if endpoint["templateId"] == template_id:
                state.apply(endpoint)  # a new release: its workers are replaced
        return template

    @v1.delete("/templates/{template_id}", status_code=204)
    async def delete_template(template_id: str) -> Response:
        control.delete_template(template_id)
        return Response(status_code=204)

    @v1.post("/endpoints")
    async def create_endpoint(request: Request) -> dict[str, Any]:
        endpoint = control.create_endpoint(await _body(request))
        state.apply(endpoint)
        return control.view(endpoint, False)

    IncludeTemplate = Annotated[bool, Query(alias="includeTemplate")]

    @v1.get("/endpoints")
    async def list_endpoints(include_template: IncludeTemplate = False) -> list[dict[str, Any]]:
        return [control.view(e, include_template) for e in control.endpoints.values()]

    @v1.get("/endpoints/{endpoint_id}")
    async def get_endpoint(endpoint_id: str, include_template: IncludeTemplate = False) -> dict:
        return control.view(control.endpoint(endpoint_id), include_template)

    @v1.patch("/endpoints/{endpoint_id}")
    @v1.post("/endpoints/{endpoint_id}/update")
    async def update_endpoint(endpoint_id: str, request: Request) -> dict[str, Any]:
        endpoint = control.update_endpoint(endpoint_id, await _body(request))
        state.apply(endpoint)
        return control.view(endpoint, False)

    @v1.delete("/endpoints/{endpoint_id}", status_code=204)
    async def delete_endpoint(endpoint_id: str) -> Response:
        control.delete_endpoint(endpoint_id)
        await state.remove(endpoint_id)
        return Response(status_code=204)

    return v1
