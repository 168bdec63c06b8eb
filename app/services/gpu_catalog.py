"""RunPod's GPU catalog (`GET /v2/catalog/gpus` with serverless availability) for deployments:
read at most once a minute per account, shared by the API's requests and its runner. Without a
RunPod key (a misconfigured API), the dated snapshot in runpod_api stands in."""

import threading
import time
from typing import Any

from app.core.config import Settings
from runpod_api import catalog
from runpod_api.client import RunPodRest

TTL_S = 60.0


class GpuCatalogs:
    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.runpod_rest_api
        self._read: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def gpus(self, key: str | None) -> list[dict[str, Any]]:
        """The catalog as the account `key` opens sees it (blocking: call it on a thread);
        RunPodApiError when RunPod cannot be read."""
        if key is None:
            return catalog.snapshot()["gpus"]
        with self._lock:  # one read a minute per account, even when requests race
            read_at, gpus = self._read.get(key, (0.0, []))
            if time.monotonic() - read_at >= TTL_S:
                with RunPodRest(key, self.base_url, backoff_s=0.5) as rest:
                    gpus = rest.gpus(availability=True)
                self._read[key] = (time.monotonic(), gpus)
            return gpus
