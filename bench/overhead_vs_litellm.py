"""What Tandem's API adds to a chat completion, side by side with the LiteLLM proxy (what users
would otherwise put in front of their models), in one run with requests taken in turn:

* an upstream answering instantly, in a process of its own: RunPod's OpenAI passthrough
  (`/v2/{endpoint}/openai/v1/chat/completions`), OpenAI's `/v1/chat/completions` (the same
  body) and RunPod's `/v2/{endpoint}/runsync` (the llm worker's answer, for `/v1/chat`);
* straight to it;
* through Tandem: `python -m app serve` with `INFERENCE_BACKEND=runpod` on an embedded
  Postgres, a real API key and its rate limiter (a limit no run reaches);
* through `litellm --config` (a master key, no database), installed by this script into a
  throwaway venv (`--litellm-venv`, kept between runs), not a project dependency.

Overhead = median(through) - median(straight), over keep-alive connections. Printed: each
overhead and the ratio Tandem / LiteLLM for a non-persisting OpenAI request; and Tandem's
persisting requests (`/v1/chat`: history read, two messages written; `/v1/chat/completions`
with `X-Conversation-Id`) against LiteLLM's non-persisting overhead.

    .venv/bin/python bench/overhead_vs_litellm.py [--requests 400]
"""

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._served import served_api  # noqa: E402
from tests.net import free_port  # noqa: E402

MODEL = "bench-model"
MASTER_KEY = "sk-bench-master"
MESSAGES = [{"role": "user", "content": "How do I deploy FastAPI to Cloud Run?"}]
# OpenAI's chat.completion object (https://platform.openai.com/docs/api-reference/chat/object).
COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1764892800,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Build, push, deploy."},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
}
# RunPod's finished job (runsync) holding the llm worker's last chunk (gpu_worker/llm/handler.py).
JOB = {
    "id": "job-bench",
    "status": "COMPLETED",
    "output": [
        {
            "raw_text": "Build, push, deploy.",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 12, "completion_tokens": 4},
            "messages_dropped": 0,
            "model": MODEL,
            "timings": {"queue_ms": 0.0, "inference_ms": 0.1, "total_ms": 0.1},
        }
    ],
}


async def upstream(scope: dict, receive: Any, send: Any) -> None:
    """The instant upstream (an ASGI app): the same body on every chat completions route."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    status, body = 200, COMPLETION
    if path.endswith("/runsync"):
        body = JOB
    elif not path.endswith("/chat/completions"):
        status, body = 404, {"error": f"no route {path}"}
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def serve_upstream(port: int) -> None:
    """The upstream's process."""
    import uvicorn

    uvicorn.run(upstream, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_for(url: str, alive: Callable[[], bool], seconds: float = 300) -> None:
    """Until `url` answers at all; exits if its server stopped."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive():
            sys.exit(f"the server for {url} exited during start-up")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer")


def litellm_python(venv: Path) -> Path:
    """The throwaway venv's python, with LiteLLM's proxy installed (once)."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "litellm").exists():
        print(f"installing litellm[proxy] into {venv} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "litellm[proxy]"], check=True)
    return python


def serve_litellm(venv: Path, upstream_url: str, port: int, home: Path) -> subprocess.Popen:
    config = home / "litellm.yaml"
    model = {"model": f"openai/{MODEL}", "api_base": f"{upstream_url}/v1", "api_key": "sk-up"}
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "model_list": [{"model_name": MODEL, "litellm_params": model}],
                "general_settings": {"master_key": MASTER_KEY},
                "litellm_settings": {"drop_params": True, "set_verbose": False},
            }
        )
    )
    env = {**os.environ, "LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "true"}
    env.pop("DATABASE_URL", None)
    return subprocess.Popen(
        [str(venv / "bin" / "litellm"), "--config", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def timed(client: httpx.Client, path: str, body: dict, headers: dict | None = None) -> float:
    started = time.perf_counter()
    response = client.post(path, json=body, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        sys.exit(f"{client.base_url}{path}: {response.status_code} {response.text[:300]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--litellm-venv", type=Path, default=Path(tempfile.gettempdir()) / "tandem-bench-litellm"
    )
    args = parser.parse_args()
    litellm_python(args.litellm_venv)

    up_port, litellm_port, tandem_port = free_port(), free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    up = multiprocessing.get_context("spawn").Process(target=serve_upstream, args=(up_port,))
    up.start()
    with tempfile.TemporaryDirectory() as home:
        wait_for(upstream_url, up.is_alive)
        proxy = serve_litellm(args.litellm_venv, upstream_url, litellm_port, Path(home))
        env = {
            "TANDEM_HOME": home,
            "INFERENCE_BACKEND": "runpod",
            "RUNPOD_API_BASE": f"{upstream_url}/v2",
            "RUNPOD_API_KEY": "rp-bench",
            "LLM_MODEL": MODEL,
            "RATE_LIMIT_PER_MINUTE": "100000000",  # the limiter runs; no run reaches it
        }
        try:
            wait_for(
                f"http://127.0.0.1:{litellm_port}/health/liveliness", lambda: proxy.poll() is None
            )
            with served_api(env, tandem_port) as (key, _server):
                measure(args, upstream_url, litellm_port, tandem_port, key)
        finally:
            proxy.terminate()
            proxy.wait(30)
            up.terminate()
            up.join(30)


def measure(
    args: argparse.Namespace, upstream_url: str, litellm_port: int, tandem_port: int, key: str
) -> None:
    openai_body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 8}
    chat_body = {"user_id": "bench", "message": MESSAGES[0]["content"], "max_tokens": 8}
    tandem_auth = {"Authorization": f"Bearer {key}"}
    straight = httpx.Client(base_url=upstream_url)
    tandem = httpx.Client(base_url=f"http://127.0.0.1:{tandem_port}", headers=tandem_auth)
    litellm = httpx.Client(
        base_url=f"http://127.0.0.1:{litellm_port}",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=30,
    )
    first = tandem.post("/v1/chat", json=chat_body)
    conversation = first.json()["conversation_id"]
    persisted = {"X-Conversation-Id": conversation}
    kinds = {
        "straight": lambda: timed(straight, "/v1/chat/completions", openai_body),
        "tandem": lambda: timed(tandem, "/v1/chat/completions", openai_body),
        "litellm": lambda: timed(litellm, "/v1/chat/completions", openai_body),
        "tandem /v1/chat": lambda: timed(
            tandem, "/v1/chat", chat_body | {"conversation_id": conversation}
        ),
        "tandem X-Conversation-Id": lambda: timed(
            tandem, "/v1/chat/completions", openai_body | {"user": "bench"}, persisted
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for i in range(args.warmup + args.requests):
        for name, call in kinds.items():
            elapsed = call()
            if i >= args.warmup:
                samples[name].append(elapsed)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        p95 = statistics.quantiles(values, n=20)[-1]
        print(f"{name:<26} median {medians[name]:7.3f} ms  p95 {p95:7.3f} ms  (n={len(values)})")
    base = medians["straight"]
    litellm_overhead = medians["litellm"] - base
    tandem_overhead = medians["tandem"] - base
    print(f"LiteLLM overhead: {litellm_overhead:.3f} ms")
    print(
        f"Tandem overhead (OpenAI, not persisted): {tandem_overhead:.3f} ms, "
        f"{tandem_overhead / litellm_overhead:.2f}x LiteLLM's (target <= 1.0)"
    )
    for name in ("tandem /v1/chat", "tandem X-Conversation-Id"):
        overhead = medians[name] - base
        print(
            f"Tandem overhead ({name.removeprefix('tandem ')}, persisted): {overhead:.3f} ms, "
            f"{overhead / litellm_overhead:.2f}x LiteLLM's non-persisting (target <= 2.0)"
        )


if __name__ == "__main__":
    main()
