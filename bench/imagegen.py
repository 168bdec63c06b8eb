"""Image generation on the CPU with tiny random pipelines built here, measured side by side in
one run:

* images a second, Stable Diffusion (256x256) and FLUX (512x512), 4 steps: 4 requests of one
  image in turn (batch 1) against 1 request of 4 images (batch 4);
* what the API adds: `POST /v1/images/generations` (`python -m app serve` with the runpod
  backend on embedded Postgres, a key and its rate limit, the job HMAC-signed, the image
  uploaded by signed URL, stored and recorded as the tenant's) against the same worker
  process's `/runsync` on the emulator answering base64, request by request in turn.

Nothing is downloaded.

    .venv/bin/python bench/imagegen.py [--requests 40]
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._served import served_api  # noqa: E402
from gpu_worker.common.signing import signed  # noqa: E402
from gpu_worker.imagegen.handler import ImagegenWorker  # noqa: E402
from gpu_worker.imagegen.settings import ImagegenSettings  # noqa: E402
from gpu_worker.imagegen.tiny import build_tiny_flux, build_tiny_sd  # noqa: E402
from tests.conftest import (  # noqa: E402
    HMAC_SECRET,
    WORKER_ENV,
    WORKERS_KEY,
    start_emulator,
    stop_emulator,
)
from tests.net import free_port  # noqa: E402

PROMPT = "a red cat on the mat"
STEPS = 4


async def images_per_second(worker: ImagegenWorker, size: int, batch: int, rounds: int) -> float:
    job = {"prompt": PROMPT, "steps": STEPS, "width": size, "height": size, "n": batch}
    started = time.perf_counter()
    for _ in range(rounds):
        result = await worker.handle({"id": "bench", "input": job})
        assert "images" in result, result
    return batch * rounds / (time.perf_counter() - started)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def api_overhead(model: Path, requests: int) -> None:
    emulator = start_emulator(
        {"imagegen": "gpu_worker.imagegen"},
        WORKER_ENV,
        {"imagegen": {"MODEL_NAME": str(model)}},
        timeout_s=120,
    )
    job = {"prompt": PROMPT, "steps": 1}
    try:
        with tempfile.TemporaryDirectory() as home:
            port = free_port()
            env = {
                "TANDEM_HOME": home,
                "INFERENCE_BACKEND": "runpod",
                "RUNPOD_API_BASE": emulator.base_url,
                "RUNPOD_API_KEY": emulator.api_key,
                "SIGNING_SECRET": HMAC_SECRET,
                "PUBLIC_URL": f"http://127.0.0.1:{port}",  # the worker uploads to it
                "RATE_LIMIT_PER_MINUTE": "100000",
                "LOG_LEVEL": "WARNING",
            }
            with served_api(env, port) as (key, _server):
                api = f"http://127.0.0.1:{port}/v1/images/generations"
                runsync = f"{emulator.base_url}/imagegen/runsync"
                through, direct = [], []
                async with httpx.AsyncClient(timeout=120) as http:
                    for _ in range(requests):
                        started = time.perf_counter()
                        response = await http.post(
                            api, json=job, headers={"Authorization": f"Bearer {key}"}
                        )
                        through.append(time.perf_counter() - started)
                        assert response.status_code == 200, response.text
                        signed_job = signed(WORKERS_KEY, job)
                        started = time.perf_counter()
                        response = await http.post(
                            runsync, json={"input": signed_job}, headers=emulator.headers
                        )
                        direct.append(time.perf_counter() - started)
                        assert response.json()["status"] == "COMPLETED", response.text
    finally:
        stop_emulator(emulator)
    print(f"worker direct (/runsync, base64)     median {median_ms(direct):7.1f} ms")
    print(f"POST /v1/images/generations (url)    median {median_ms(through):7.1f} ms")
    print(f"API overhead: {median_ms(through) - median_ms(direct):.1f} ms a request (median)")


async def main(requests: int) -> None:
    print(f"tiny random pipelines, {STEPS} steps, torch on {psutil.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as models:
        sd = build_tiny_sd(Path(models) / "sd")
        for name, model, size in (
            ("SD", sd, 256),
            ("FLUX", build_tiny_flux(Path(models) / "flux"), 512),
        ):
            worker = ImagegenWorker(ImagegenSettings(model_name=str(model)))
            worker.load()
            await images_per_second(worker, size, 1, 1)  # warm-up
            one = await images_per_second(worker, size, 1, rounds=8)
            four = await images_per_second(worker, size, 4, rounds=2)
            print(
                f"{name:<4} {size}x{size}  batch 1 {one:6.2f} images/s   batch 4 {four:6.2f} "
                f"images/s  ({four / one:.2f}x)"
            )
        await api_overhead(sd, requests)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    asyncio.run(main(parser.parse_args().requests))
