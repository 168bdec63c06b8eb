"""Start a worker under the runpod SDK's job loop: the last line of every worker's __main__."""

from collections.abc import Callable
from typing import Any

from gpu_worker.common.settings import WorkerSettings


def serve(handler: Callable[[dict[str, Any]], Any], settings: WorkerSettings) -> None:
    import runpod  # the worker images' runtime; the API's local backend never imports it

    runpod.serverless.start(
        {
            "handler": handler,
            "concurrency_modifier": lambda _current: settings.max_concurrency,
            "return_aggregate_stream": True,
        }
    )
