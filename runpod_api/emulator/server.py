"""The local RunPod's HTTP server: RunPod's control plane (REST API v2, `/v2/serverless`,
`/v2/templates`, ...: every request body checked against the spec, errors as RFC 9457
problems), its public job API (`/v2/{endpoint_id}`, with the OpenAI passthrough
`/v2/{endpoint_id}/openai/v1/...`) and the routes its workers poll, on one port."""

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

from runpod_api import spec
from runpod_api.emulator.control import ControlError, ControlPlane, now
from runpod_api.emulator.jobs import COMPLETED, FINAL, Endpoint, Job
from runpod_api.emulator.workers import Pool

DEFAULT_RUNSYNC_WAIT_MS = 90_000
STREAM_POLL_S = 1.0  # how long /stream holds a request open for new chunks
WORKER_POLL_S = 2.0  # how long job-take and job-stop hold a worker's request open
SCALE_EVERY_S = 0.2  # how often the worker pools are scaled
LOG_POLL_S = 0.5  # how often a followed worker log looks for new lines
FIXED_GPU: dict[str, Any] = {"id": "local", "price": {}}  # where fixed endpoints' workers run


class Emulator:
    """The local RunPod's state: job queues and worker pools by endpoint id, the control plane,
    the API keys it accepts (a set, so a test can rotate them), the image -> module map, the
    private registries (host -> the username and password that pull from it) and variables the
    machine gives every worker of an endpoint made through the control plane (`machine_env`:
    CPU settings, say)."""

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
        self.control = ControlPlane(base_url)
        self.queues: dict[str, Endpoint] = {}
        self.pools: dict[str, Pool] = {}
        self.billed: dict[str, float] = {}  # USD of deleted endpoints, by id

    def owned_pools(self) -> list[tuple[str, Pool]]:
        """The pools of endpoints made through the control plane (not the fixed ones)."""
        return [(eid, pool) for eid, pool in self.pools.items() if eid in self.control.endpoints]

    def add_endpoint(self, endpoint_id: str, timeout_s: float | None, inherit_env: bool) -> Pool:
        queue = Endpoint(endpoint_id, timeout_s)
        self.queues[endpoint_id] = queue
        self.pools[endpoint_id] = pool = Pool(queue, self.base_url, inherit_env)
        return pool

    def apply(self, endpoint: dict[str, Any]) -> None:
        """(Re)configure the queue and the workers of an endpoint made through the control
        plane: its image's module, its env (secrets resolved), its workers and its GPU."""
        pool = self.pools.get(endpoint["id"]) or self.add_endpoint(endpoint["id"], None, False)
        pool.queue.execution_timeout_s = endpoint["timeout"] / 1000
        workers = endpoint["workers"]
        pool.configure(
            self.images.get(endpoint["image"]) if self.can_pull(endpoint) else None,
            self.machine_env | self.control.boot_env(endpoint["env"]),
            workers["min"],
            workers["max"],
            workers["idleTimeout"],
            self.control.placement(endpoint),
        )

    def can_pull(self, container: dict[str, Any]) -> bool:
        """Whether a worker can pull the container's image: one from a private registry only
        with a registry credential holding that registry's username and password."""
        host = container["image"].split("/", 1)[0]
        if host not in self.registries:
            return True
        registry = self.control.registries.get(container.get("registry") or "")
        return (
            registry is not None
            and (
                registry["username"],
                registry["password"],
            )
            == self.registries[host]
        )

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
    """`endpoints` maps ids of fixed endpoints (image `local/<module>`, one worker, always on, in
    this process's environment; listed by the control plane as any other) to worker modules;
    `base_url` is where workers reach us; `endpoint_env` adds variables to one fixed endpoint's
    workers; `images` maps the images of endpoints made through the control plane to worker
    modules; `registries` makes registry hosts private (see `Emulator.can_pull`); `machine_env`
    goes to the workers of those endpoints."""
    state = Emulator(base_url, images or {}, api_key, registries, machine_env)
    for name, module in endpoints.items():
        env = (endpoint_env or {}).get(name, {})
        state.images[f"local/{module}"] = module
        state.control.create_endpoint(
            {
                "name": name,
                "type": "QUEUE",
                "image": f"local/{module}",
                "env": env,
                "gpu": {"pools": [state.control.gpus[0]["pool"]]},
                "workers": {"min": 1, "max": 1},
                "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
            },
            endpoint_id=name,
        )
        state.add_endpoint(name, execution_timeout_s, True).configure(
            module, env, 1, 1, gpu=FIXED_GPU
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
        pool = state.pools.get(endpoint.name)  # None: the endpoint was deleted meanwhile
        if pool is None or worker_id not in pool.workers:
            return []  # a worker being stopped (scaled down, an old release) takes no job
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

    app = FastAPI(title="Tandem's local RunPod", lifespan=lifespan)
    app.state.emulator = state

    @app.exception_handler(HTTPException)
    async def _error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(ControlError)
    async def _control_error(request: Request, exc: ControlError) -> JSONResponse:
        return _error_response(request, exc.status, str(exc), exc.errors)

    app.include_router(control_routes(state, authorized))
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


def _error_response(
    request: Request, status: int, message: str, errors: list[str] | None = None
) -> JSONResponse:
    """An error as RunPod answers it: a problem (RFC 9457) on the control plane, `{"error"}` on
    the job API."""
    if spec.path_exists(request.url.path):
        problem: dict[str, Any] = {
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": message,
        }
        if errors:
            problem["errors"] = errors
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


async def _checked(request: Request) -> dict[str, Any]:
    """The request's JSON body, checked against the spec's schema for its operation: an unknown
    field or a missing one is a 400, a value of the wrong type, range or enum a 422, each
    naming the field."""
    body = await _body(request)
    operation = spec.operation(request.method, request.url.path)
    assert operation is not None, f"no spec for {request.method} {request.url.path}"
    errors, status = operation.request_errors(body)
    if errors:
        raise ControlError(status, "; ".join(errors), errors)
    return body


Checked = Annotated[dict[str, Any], Depends(_checked)]


def control_routes(state: Emulator, authorized: Any) -> APIRouter:
    """RunPod's REST API v2 for serverless endpoints, templates, registry credentials, account
    secrets, the GPU catalog and serverless billing."""
    v2 = APIRouter(prefix="/v2", dependencies=[Depends(authorized)])
    control = state.control

    # -- catalog --------------------------------------------------------------------------
    @v2.get("/catalog/gpus")
    async def list_gpus(include: str | None = None, product: str | None = None) -> dict:
        if include is not None and include != "AVAILABILITY":
            raise ControlError(422, f"include: {include!r} is not one of ['AVAILABILITY']")
        if include and product is None:
            raise ControlError(400, "include=AVAILABILITY requires product")
        return {"gpus": control.catalog(availability=include is not None)}

    @v2.get("/catalog/gpus/{gpu_id:path}")
    async def get_gpu(gpu_id: str) -> dict[str, Any]:
        found = [gpu for gpu in control.catalog(False) if gpu["id"] == gpu_id]
        if not found:
            raise ControlError(404, f"GPU type {gpu_id} not found")
        return found[0]

    # -- registry credentials -------------------------------------------------------------
    @v2.post("/registries", status_code=201)
    async def create_registry(body: Checked) -> dict[str, Any]:
        return control.create_registry(body)

    @v2.get("/registries")
    async def list_registries() -> dict[str, Any]:
        return {"registries": [control.registry(item) for item in control.registries]}

    @v2.get("/registries/{registry_id}")
    async def get_registry(registry_id: str) -> dict[str, Any]:
        return control.registry(registry_id)

    @v2.delete("/registries/{registry_id}", status_code=204)
    async def delete_registry(registry_id: str) -> Response:
        control.delete_registry(registry_id)
        return Response(status_code=204)

    # -- account secrets ------------------------------------------------------------------
    @v2.post("/account/secrets", status_code=201)
    async def create_secret(body: Checked) -> dict[str, Any]:
        return control.create_secret(body)

    @v2.get("/account/secrets")
    async def list_secrets(name: str | None = None) -> dict[str, Any]:
        found = [control.secret(secret_id) for secret_id in control.secrets]
        return {"secrets": [s for s in found if name is None or s["name"].lower() == name.lower()]}

    @v2.get("/account/secrets/{secret_id}")
    async def get_secret(secret_id: str) -> dict[str, Any]:
        return control.secret(secret_id)

    @v2.patch("/account/secrets/{secret_id}")
    async def update_secret(secret_id: str, body: Checked) -> dict[str, Any]:
        return control.update_secret(secret_id, body)

    @v2.delete("/account/secrets/{secret_id}", status_code=204)
    async def delete_secret(secret_id: str) -> Response:
        control.delete_secret(secret_id)
        return Response(status_code=204)

    # -- templates ------------------------------------------------------------------------
    @v2.post("/templates", status_code=201)
    async def create_template(body: Checked) -> dict[str, Any]:
        return control.create_template(body)

    @v2.get("/templates")
    async def list_templates() -> dict[str, Any]:
        return {"templates": list(control.templates.values())}

    @v2.get("/templates/{template_id}")
    async def get_template(template_id: str) -> dict[str, Any]:
        return control.template(template_id)

    @v2.patch("/templates/{template_id}")
    async def update_template(template_id: str, body: Checked) -> dict[str, Any]:
        return control.update_template(template_id, body)  # endpoints made from it keep theirs

    @v2.delete("/templates/{template_id}", status_code=204)
    async def delete_template(template_id: str) -> Response:
        control.delete_template(template_id)
        return Response(status_code=204)

    # -- serverless endpoints -------------------------------------------------------------
    @v2.post("/serverless", status_code=201)
    async def create_endpoint(body: Checked) -> dict[str, Any]:
        endpoint = control.create_endpoint(body)
        state.apply(endpoint)
        return endpoint

    @v2.get("/serverless")
    async def list_endpoints() -> dict[str, Any]:
        return {"endpoints": list(control.endpoints.values())}

    @v2.get("/serverless/{endpoint_id}")
    async def get_endpoint(endpoint_id: str) -> dict[str, Any]:
        return control.endpoint(endpoint_id)

    @v2.patch("/serverless/{endpoint_id}")
    async def update_endpoint(endpoint_id: str, body: Checked) -> dict[str, Any]:
        endpoint = control.update_endpoint(endpoint_id, body)
        state.apply(endpoint)
        return endpoint

    @v2.delete("/serverless/{endpoint_id}", status_code=204)
    async def delete_endpoint(endpoint_id: str) -> Response:
        control.endpoint(endpoint_id)
        state.billed[endpoint_id] = state.pools[endpoint_id].billed()
        control.delete_endpoint(endpoint_id)
        await state.remove(endpoint_id)
        return Response(status_code=204)

    @v2.get("/serverless/{endpoint_id}/workers")
    async def list_workers(endpoint_id: str) -> dict[str, Any]:
        control.endpoint(endpoint_id)
        return state.pools[endpoint_id].listing()

    @v2.get("/serverless/{endpoint_id}/releases")
    async def list_releases(endpoint_id: str) -> dict[str, Any]:
        control.endpoint(endpoint_id)
        listing = state.pools[endpoint_id].listing()
        workers = [w for w in listing["workers"] if w["status"] != "THROTTLED"]
        on_latest = sum(1 for worker in workers if not worker["isStale"])
        releases = control.releases[endpoint_id]
        releases[0]["workerCount"] = on_latest
        return {
            "endpointVersion": releases[0]["version"],
            "rollout": {
                "inProgress": on_latest < len(workers),
                "workersOnLatest": on_latest,
                "workersTotal": len(workers),
                "percentOnLatest": round(100 * on_latest / len(workers)) if workers else 100,
            },
            "releases": releases,
        }

    @v2.get("/serverless/{endpoint_id}/workers/{worker_id}/logs")
    async def worker_logs(
        endpoint_id: str,
        worker_id: str,
        tail: Annotated[int, Query(ge=0, le=5000)] = 100,
        since: str | None = None,
    ) -> StreamingResponse:
        """The worker's log lines as Server-Sent Events, then new ones as they come, until the
        worker has stopped."""
        control.endpoint(endpoint_id)
        pool = state.pools[endpoint_id]
        worker = pool.worker(worker_id)
        if worker is None:
            raise ControlError(404, f"worker {worker_id} not found")

        async def events() -> AsyncIterator[str]:
            lines = [(ts, line) for ts, line in worker.logs if since is None or ts > since]
            sent = lines[-tail:] if tail else []
            last = lines[-1][0] if lines else ""
            while True:
                for ts, line in sent:
                    data = json.dumps({"ts": ts, "source": "container", "line": line})
                    yield f"id: {ts}\ndata: {data}\n\n"
                if pool.worker(worker_id) is None:
                    return
                await asyncio.sleep(LOG_POLL_S)
                sent = [(ts, line) for ts, line in worker.logs if ts > last]
                last = sent[-1][0] if sent else last

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    # -- billing --------------------------------------------------------------------------
    @v2.get("/billing/serverless")
    async def serverless_billing(
        startTime: str | None = None,  # RunPod's names
        endTime: str | None = None,
        bucketSize: str = "day",
        serverlessId: str | None = None,
    ) -> dict[str, Any]:
        """What each endpoint's workers cost so far (worker seconds x their GPU's serverless
        price), as one record for the window asked."""
        if bucketSize not in ("hour", "day", "week", "month", "year"):
            raise ControlError(422, f"bucketSize: {bucketSize!r} is not a bucket size")
        start, end = startTime or control.started_at, endTime or now()
        amounts = state.billed | {eid: pool.billed() for eid, pool in state.owned_pools()}
        records: list[dict[str, Any]] = [
            {"startTime": start, "endTime": end, "serverlessId": endpoint_id} | _amounts(usd)
            for endpoint_id, usd in amounts.items()
            if serverlessId in (None, endpoint_id)
        ]
        total = sum(record["totalAmount"] for record in records)
        query = {"startTime": start, "endTime": end, "bucketSize": bucketSize}
        return {
            "records": records,
            "metadata": {
                "query": query | {"serverlessId": serverlessId},
                "recordCount": len(records),
                "uniqueServerlessCount": len(records),
                "totals": _amounts(total),
            },
        }

    return v2


def _amounts(usd: float) -> dict[str, float]:
    """A serverless billing record's amounts: all of it GPU time here (no disk, no fee)."""
    usd = round(usd, 6)
    return {
        "totalAmount": usd,
        "gpuAmount": usd,
        "cpuAmount": 0.0,
        "diskAmount": 0.0,
        "feeAmount": 0.0,
    }
