"""`python -m stacks logs STACK ENDPOINT [--worker ID] [--follow]`: a stack's GPU endpoint's
worker logs as RunPod keeps them (REST API v2). ENDPOINT is a worker type the stack runs
(`llm`: its output `llm_endpoint_id`) or an endpoint id; without `--worker`, every worker's,
each line led by its worker's id. Without `--follow` it prints what RunPod has and stops once
no line came for IDLE_S; with it, it goes on until interrupted (or the worker stops)."""

from collections.abc import Iterator
from typing import Any

import httpx

from runpod_api.client import RunPodRest

IDLE_S = 2.0


def endpoint_id(outputs: dict[str, Any], endpoint: str) -> str:
    """The stack output `<endpoint>_endpoint_id`, or `endpoint` itself (an id)."""
    return str(outputs.get(f"{endpoint}_endpoint_id", endpoint))


def lines(
    rest: RunPodRest, endpoint: str, worker: str | None, follow: bool, tail: int = 100
) -> Iterator[str]:
    """The log lines to print, `<worker> <ts> <line>`."""
    workers = [worker] if worker else [w["id"] for w in rest.workers(endpoint)["workers"]]
    for worker_id in workers:
        try:
            for event in rest.worker_logs(
                endpoint, worker_id, tail, idle_s=None if follow else IDLE_S
            ):
                yield f"{worker_id} {event['ts']} {event['line']}"
        except httpx.ReadTimeout:
            continue  # quiet for IDLE_S: all it had was printed
