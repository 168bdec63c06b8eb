"""The emulator's HTTP server: RunPod's public job API and the routes its workers poll."""

import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from gpu_worker.emulator.jobs import FINAL, Endpoint, Job
from gpu_worker.emulator.workers import WorkerProcess, worker_env

DEFAULT_RUNSYNC_WAIT_MS = 90_000
STREAM_POLL_S = 1.0  # how long /stream holds a request open for new chunks
WORKER_POLL_S = 2.0  # how long job-take and job-stop hold a worker's request open


def create_app(
    endpoints: dict[str, str],
    base_url: str,
    *,
    api_key: str | None = None,
    execution_timeout_s: float | None = None,
    endpoint_env: dict[str, dict[str, str]] | None = None,
) -> FastAPI:
    """`endpoints` maps endpoint names to worker modules; `base_url` is where workers reach us;
    `endpoint_env` adds variables to one endpoint's workers (as a RunPod template's env)."""
    endpoint_env = endpoint_env or {}
    queues = {name: Endpoint(name, execution_timeout_s) for name in endpoints}
    workers = [
        WorkerProcess(
            module, {**worker_env(base_url, name, f"{name}-worker-0"), **endpoint_env.get(name, {})}
        )
        for name, module in endpoints.items()
    ]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            for worker in workers:
                await worker.stop()

    def endpoint_of(endpoint_id: str) -> Endpoint:
        if endpoint_id not in queues:
            raise HTTPException(404, f"endpoint {endpoint_id} not found")
        return queues[endpoint_id]

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if api_key is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "Unauthorized")

    def job_of(endpoint: Endpoint, job_id: str) -> Job:
        job = endpoint.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "request does not exist")
        return job

    EndpointDep = Annotated[Endpoint, Depends(endpoint_of)]
    public = APIRouter(prefix="/v2/{endpoint_id}", dependencies=[Depends(authorized)])

    async def submit(request: Request, endpoint: Endpoint, source: str) -> Job:
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "request body must be JSON") from None
        if not isinstance(body, dict) or "input" not in body:
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

    @public.get("/health")
    async def health(endpoint: EndpointDep) -> dict[str, Any]:
        return endpoint.health()

    # The routes below are the ones the runpod SDK's job loop calls (RUNPOD_WEBHOOK_*).
    internal = APIRouter(prefix="/v2/{endpoint_id}", include_in_schema=False)

    def jobs_response(jobs: list[Job], batch: bool) -> Response:
        if not jobs:
            return Response(status_code=204)
        payload = [{"id": j.id, "input": j.input} for j in jobs]
        return JSONResponse(payload if batch else payload[0])

    async def take(endpoint: Endpoint, worker_id: str, count: int) -> list[Job]:
        await endpoint.wait_until(lambda: bool(endpoint.queue), WORKER_POLL_S)
        return endpoint.take(worker_id, count)

    @internal.get("/job-take/{worker_id}")
    async def job_take(endpoint: EndpointDep, worker_id: str) -> Response:
        return jobs_response(await take(endpoint, worker_id, 1), batch=False)

    @internal.get("/job-take-batch/{worker_id}")
    async def job_take_batch(
        endpoint: EndpointDep, worker_id: str, batch_size: Annotated[int, Query(ge=1)] = 1
    ) -> Response:
        return jobs_response(await take(endpoint, worker_id, batch_size), batch=True)

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
    app.state.workers = workers

    @app.exception_handler(HTTPException)
    async def _error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    app.include_router(public)
    app.include_router(internal)
    return app
