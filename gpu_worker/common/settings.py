"""Settings every worker reads once from its environment."""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    # An empty variable means "unset": images set MODEL_NAME="" when no weights were baked in.
    model_config = SettingsConfigDict(env_ignore_empty=True)

    embedding_hmac_secret: SecretStr | None = None
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
