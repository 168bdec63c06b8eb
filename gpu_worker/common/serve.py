"""Start a worker under the runpod SDK's job loop: the last line of every worker's __main__."""

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

from gpu_worker.common.settings import WorkerSettings


def serve(handler: Callable[[dict[str, Any]], Any], settings: WorkerSettings) -> None:
    import runpod  # the worker images' runtime; the API's local backend never imports it

    config: dict[str, Any] = {
        "concurrency_modifier": lambda _current: settings.max_concurrency,
        "return_aggregate_stream": True,
    }
    config["handler"] = (
        refreshing(handler, config) if inspect.isasyncgenfunction(handler) else handler
    )
    runpod.serverless.start(config)


def refreshing(
    handler: Callable[[dict[str, Any]], AsyncIterator[Any]], config: dict[str, Any]
) -> Callable[[dict[str, Any]], AsyncIterator[Any]]:
    """`handler`, whose items may ask for a fresh worker (`"refresh_worker": True`, as a plain
    handler's result may): the runpod SDK reads that only from a plain handler's result, and
    from a generator's only its config's `refresh_worker`, which this sets. The SDK then
    reports the job with `stopPod` and ends the worker, which RunPod replaces."""

    async def handle(job: dict[str, Any]) -> AsyncIterator[Any]:
        async for item in handler(job):
            if isinstance(item, dict) and item.get("refresh_worker"):
                config["refresh_worker"] = True
            yield item

    return handle
