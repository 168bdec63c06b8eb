"""Settings every worker reads once from its environment."""

from ipaddress import IPv4Network, IPv6Network

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    # An empty variable means "unset": images set MODEL_NAME="" when no weights were baked in.
    model_config = SettingsConfigDict(env_ignore_empty=True)

    # The key the API signs this worker's jobs with (app/core/keys.py), and its callbacks.
    signing_key: SecretStr | None = None
    max_concurrency: int = Field(8, ge=1, le=1024)
    # When set, the worker POSTs {endpoint_id, model, status: "ready"} here once loaded.
    ready_webhook_url: str | None = None
    runpod_endpoint_id: str = "local"


class ModelSettings(WorkerSettings):
    """A worker that serves one model."""

    model_name: str  # a hub id or a local directory
    served_model_name: str | None = None  # the model id answers carry; MODEL_NAME when unset

    @property
    def model_id(self) -> str:
        return self.served_model_name or self.model_name


class FetchingModelSettings(ModelSettings):
    """A model worker that downloads inputs from URLs users give, or uploads its outputs to
    signed URLs (gpu_worker.common.fetch)."""

    fetch_connect_timeout_seconds: float = Field(3.0, gt=0)
    fetch_read_timeout_seconds: float = Field(10.0, gt=0)
    fetch_deadline_seconds: float = Field(30.0, gt=0, le=300)  # a whole download
    # Networks a URL may resolve into although they are private (tests, sidecars), and URL
    # prefixes fetched wherever they resolve (the local API's own signed-object path).
    fetch_allowed_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    fetch_allowed_prefixes: list[str] = Field(default_factory=list)

    def fetch(self, url: str, what: str, allowed_types: tuple[str, ...], max_bytes: int) -> bytes:
        """The body of `url` under these settings' rules (fetch_bytes)."""
        from gpu_worker.common.fetch import fetch_bytes

        return fetch_bytes(
            url,
            what=what,
            allowed_types=allowed_types,
            max_bytes=max_bytes,
            connect_timeout=self.fetch_connect_timeout_seconds,
            read_timeout=self.fetch_read_timeout_seconds,
            deadline_s=self.fetch_deadline_seconds,
            allowed_networks=self.fetch_allowed_networks,
            allowed_prefixes=self.fetch_allowed_prefixes,
        )

    def upload(self, url: str, data: bytes, content_type: str, timeout: float) -> None:
        """PUT `data` to a signed upload URL under these settings' rules (upload_bytes)."""
        from gpu_worker.common.fetch import upload_bytes

        upload_bytes(
            url,
            data,
            content_type,
            timeout=timeout,
            allowed_networks=self.fetch_allowed_networks,
            allowed_prefixes=self.fetch_allowed_prefixes,
        )
