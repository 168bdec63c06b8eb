"""The check after a deploy: wait until the API's `/readiness` and each GPU endpoint's
RunPod `/health` answer and its rollout is done (RunPod's REST API v2: no stale worker of an
older release left), name its workers that are unhealthy (a failure: they cannot start) or
throttled (a note: no GPU free in its pools), then run one smoke inference through the deployed
API. Each step prints one line; the first failure (or the deadline) fails the check."""

import time
from collections.abc import Callable

import httpx

from runpod_api.client import RunPodApiError, RunPodRest

SMOKE_CHAT = {"user_id": "post-deploy-check", "message": "Reply with one word.", "max_tokens": 8}


class CheckFailed(Exception):
    pass


def _wait(what: str, probe: Callable[[], str | None], deadline: float, every_s: float) -> None:
    """Call `probe` until it returns None (ready) or the deadline passes; it returns why not."""
    while True:
        reason = probe()
        if reason is None:
            print(f"ok: {what}", flush=True)
            return
        if time.monotonic() + every_s > deadline:
            raise CheckFailed(f"{what} not ready in time: {reason}")
        time.sleep(every_s)


def _status(client: httpx.Client, url: str, **kwargs) -> str | None:
    try:
        response = client.get(url, **kwargs)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def _rollout(rest: RunPodRest, endpoint: str) -> str | None:
    """None once the endpoint's workers all run its latest release, else how far it is."""
    try:
        rollout = rest.releases(endpoint)["rollout"]
    except RunPodApiError as exc:
        return f"HTTP {exc.status}: {exc.detail}"
    if not rollout["inProgress"]:
        return None
    return f"{rollout['workersOnLatest']} of {rollout['workersTotal']} workers on the latest"


def _workers(rest: RunPodRest, endpoint: str) -> None:
    """Name the endpoint's throttled workers; fail on unhealthy ones."""
    workers = rest.workers(endpoint)["workers"]
    throttled = [w["id"] for w in workers if w["status"] == "THROTTLED"]
    unhealthy = [w["id"] for w in workers if w["status"] == "UNHEALTHY"]
    if throttled:
        print(f"note: GPU endpoint {endpoint}: throttled (no GPU free): {', '.join(throttled)}")
    if unhealthy:
        raise CheckFailed(f"GPU endpoint {endpoint}: unhealthy workers: {', '.join(unhealthy)}")


def check(
    api_url: str,
    api_key: str,
    endpoint_ids: list[str],
    runpod_api_base: str,
    runpod_rest_api: str,
    runpod_api_key: str,
    timeout_s: float,
    every_s: float = 5.0,
) -> None:
    """Raises CheckFailed naming the step that failed. `runpod_api_base`: RunPod's job API
    (/health); `runpod_rest_api`: its REST API v2 host (releases, workers)."""
    deadline = time.monotonic() + timeout_s
    api_url = api_url.rstrip("/")
    runpod = {"Authorization": f"Bearer {runpod_api_key}"}
    with httpx.Client(timeout=30) as client, RunPodRest(runpod_api_key, runpod_rest_api) as rest:
        _wait("API /readiness", lambda: _status(client, f"{api_url}/readiness"), deadline, every_s)
        for endpoint in endpoint_ids:
            url = f"{runpod_api_base.rstrip('/')}/{endpoint}/health"
            probe = lambda url=url: _status(client, url, headers=runpod)  # noqa: E731
            _wait(f"GPU endpoint {endpoint} /health", probe, deadline, every_s)
            rolled = lambda endpoint=endpoint: _rollout(rest, endpoint)  # noqa: E731
            _wait(f"GPU endpoint {endpoint} rollout", rolled, deadline, every_s)
            _workers(rest, endpoint)
        remaining = max(1.0, deadline - time.monotonic())
        try:
            response = client.post(
                f"{api_url}/v1/chat",
                json=SMOKE_CHAT,
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=remaining,
            )
        except httpx.HTTPError as exc:
            raise CheckFailed(f"smoke chat: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise CheckFailed(f"smoke chat: HTTP {response.status_code}: {response.text[:300]}")
        answer = response.json().get("assistant_message", "")
        print(f"ok: smoke chat answered {answer[:60]!r} ({response.json().get('model_id')})")
