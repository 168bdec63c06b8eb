"""The API's settings: one `Settings` object read from the environment (and `.env`)."""

from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core import keys
from gpu_worker.common.worker_types import WORKER_TYPES

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["local", "dev", "prod", "test"] = "local"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    tandem_home: Path = REPO_ROOT / ".tandem"
    # Empty means: the embedded Postgres under TANDEM_HOME (local mode).
    database_url: SecretStr | None = None
    # A managed Postgres (Supabase): its CA certificate in PEM, to verify the server's
    # certificate and host name (libpq's verify-full); and its pooler's mode: "transaction"
    # (Supavisor on port 6543) keeps no prepared statements, so asyncpg's cache is turned off.
    database_ca_cert: SecretStr | None = None
    database_pool_mode: Literal["session", "transaction"] = "session"
    db_pool_size: int = Field(10, ge=1, le=200)
    # Unset: local and test runs migrate the database on start-up; a deployed API (dev, prod)
    # leaves it to the deploy's migration job, so no instance migrates under a serving one.
    migrate_on_start: bool | None = None

    inference_backend: Literal["runpod", "local"] = "local"
    runpod_api_base: str = "https://api.runpod.ai/v2"
    runpod_api_key: SecretStr | None = None
    runpod_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    # Each worker type's endpoint (gpu_worker.common.worker_types: <name>_endpoint_id).
    llm_endpoint_id: str = "llm"
    embed_endpoint_id: str = "embed"
    clip_endpoint_id: str = "clip"
    transcribe_endpoint_id: str = "transcribe"
    imagegen_endpoint_id: str = "imagegen"
    # Models the `local` backend runs in-process: hub ids (from the local cache) or directories.
    # A chat, CLIP or image model that cannot be loaded offline is replaced by a tiny random
    # one, a speech model by the packaged Whisper tiny.en.
    llm_model: str = "Qwen/Qwen2.5-0.5B-Instruct"
    llm_max_model_len: int | None = Field(None, ge=16)
    text_embedding_model: str | None = None  # empty: the packaged all-MiniLM-L6-v2
    clip_model: str = "openai/clip-vit-base-patch32"
    transcribe_model: str = "Systran/faster-whisper-small"  # a CTranslate2 Whisper
    imagegen_model: str = "stabilityai/sdxl-turbo"  # a diffusers text-to-image repository
    # Audio up to this size goes to the transcribe worker inside the job (RunPod takes 10 MiB
    # bodies on /run, 20 on /runsync); larger, as a signed URL of a stored copy.
    transcribe_inline_bytes: int = Field(7_000_000, ge=0, le=10_000_000)
    # The stack's one signing secret (EMBEDDING_HMAC_SECRET: its old name): each purpose signs
    # with a key derived from it (app/core/keys.py); it never leaves the API.
    signing_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("signing_secret", "embedding_hmac_secret")
    )
    # Image URLs given to POST /v1/images must resolve to public addresses, or to these.
    fetch_allowed_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    fetch_deadline_seconds: float = Field(30.0, gt=0, le=300)  # a whole download
    # Vector sizes of the text and CLIP embedding models: the tables are made with them, and
    # start-up refuses a database whose tables were made for other sizes.
    text_embedding_dim: int = Field(384, ge=1, le=2000)
    image_embedding_dim: int = Field(512, ge=1, le=2000)

    # Uploads: a directory (default TANDEM_HOME/objects), a GCS bucket or a Supabase Storage
    # bucket (its project URL and secret key); in a bucket, every object is under STORAGE_PREFIX.
    storage_mode: Literal["local", "gcs", "supabase"] = "local"
    storage_dir: Path | None = None
    gcs_bucket: str | None = None
    supabase_url: str | None = Field(None, pattern=r"^https?://")
    supabase_service_key: SecretStr | None = None
    supabase_bucket: str = "uploads"
    storage_prefix: str = ""
    # Where the API is reached (local signed URLs point here).
    public_url: str = "http://127.0.0.1:8000"
    # Asynchronous jobs: RunPod's webhooks reach the API at WEBHOOK_BASE_URL (its public
    # https address; unset: jobs are polled every JOB_POLL_SECONDS); a job not done within
    # JOB_TIMEOUT_SECONDS fails.
    webhook_base_url: str | None = None
    job_poll_seconds: float = Field(2.0, gt=0, le=300)
    job_timeout_seconds: float = Field(3600.0, ge=10)

    # Documents and images: upload size, chunking (in word and punctuation tokens), retention.
    max_upload_bytes: int = Field(20_000_000, ge=1024)
    chunk_tokens: int = Field(200, ge=16, le=2000)
    chunk_overlap_tokens: int = Field(40, ge=0)
    embed_batch_size: int = Field(64, ge=1, le=256)
    retention_raw_days: int = Field(30, ge=1)
    # Audio, as a lecture app keeps it: a transcript's raw audio is replaced by the transcript's
    # text after RETENTION_AUDIO_DAYS; transcripts (audio documents, transcription jobs) go
    # after RETENTION_TRANSCRIPT_DAYS.
    retention_audio_days: int = Field(7, ge=1)
    retention_transcript_days: int = Field(365, ge=1)

    # Deployments (`/v1/deployments`): RunPod endpoints made at run time for tenants' models,
    # on the stack's llm worker image (diffusion models: its imagegen image), through RunPod's
    # REST API v2; models are checked on the Hugging Face Hub (HF_ENDPOINT: another Hub).
    runpod_rest_api: str = "https://api.runpod.io"  # REST API v2 (paths /v2/...)
    deployment_image: str | None = None
    deployment_imagegen_image: str | None = None
    deployment_registry_auth_id: str | None = None  # RunPod's credential for a private image
    # What RunPod's names of its templates and endpoints start with: the stack's (it removes
    # them when it is destroyed; runpod_api/names.py).
    deployment_name_prefix: str = Field("tandem-deploy-local", pattern=r"^[a-z0-9][a-z0-9-]*$")
    deployment_gpu_types: list[str] = Field(
        default_factory=lambda: [
            "NVIDIA RTX A5000",
            "NVIDIA GeForce RTX 4090",
            "NVIDIA A40",
        ],
        min_length=1,
    )
    # Deployments in the stack's own RunPod account (a tenant with its own key deploys in its
    # account) are for these tenants only ("*": every tenant; unset: every tenant in local and
    # test runs, none when deployed); and what any deployment may keep running.
    stack_account_tenants: list[str] | None = None
    max_deployment_min_workers: int = Field(1, ge=0, le=100)
    max_deployment_idle_timeout: int = Field(300, ge=1, le=3600)
    max_live_deployments: int = Field(5, ge=0, le=1000)
    max_deployment_workers: int = Field(3, ge=1, le=100)
    deployment_ready_seconds: int = Field(1800, ge=10)
    # A deployment whose workers fail to start this often within the window is stopped and
    # failed (each start of a crashing worker is billed).
    deployment_max_failed_starts: int = Field(3, ge=1, le=100)
    deployment_failed_starts_window_seconds: int = Field(900, ge=10, le=86400)
    deployment_webhook_retry_seconds: float = Field(5.0, gt=0, le=3600)
    hf_endpoint: str | None = None
    # Tenants' own RunPod keys are sealed with these (app/core/envelope.py: `id:base64,...`,
    # the first encrypts); unset, a local or test run keeps one in TANDEM_HOME, and a deployed
    # API takes no tenant keys (503).
    tenant_key_encryption_keys: SecretStr | None = None

    # What one request may ask of a worker: choices (`n`, `best_of`; also the workers'
    # VLLM_MAX_N_SEQUENCES), tokens to generate, prompts or inputs in one list.
    max_n: int = Field(8, ge=1, le=1024)
    max_output_tokens: int = Field(4096, ge=1)
    max_input_items: int = Field(256, ge=1)
    # A tenant's requests in flight at once on each worker type, per API instance (429 past it).
    tenant_concurrency: dict[str, int] = Field(
        default_factory=lambda: {"llm": 32, "embed": 32, "clip": 32, "transcribe": 4, "imagegen": 2}
    )

    # USD a second on each worker type's GPUs, for usage's cost (the stack sets it from RunPod's
    # catalog); unset in a local or test run: the dev stack's GPUs at the catalog snapshot's.
    gpu_prices: dict[str, float] | None = None

    rate_limit_per_minute: int = Field(100, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    history_messages: int = Field(20, ge=0, le=1000)

    @model_validator(mode="after")
    def _check_chunking(self) -> "Settings":
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("CHUNK_OVERLAP_TOKENS must be smaller than CHUNK_TOKENS")
        return self

    def signing_key(self, purpose: str) -> str | None:
        """The key derived from SIGNING_SECRET for `purpose` (None: no secret set)."""
        if self.signing_secret is None:
            return None
        return keys.derive(self.signing_secret.get_secret_value(), purpose)

    def endpoint_ids(self) -> dict[str, str]:
        """Each worker type's endpoint id."""
        return {name: getattr(self, f"{name}_endpoint_id") for name in WORKER_TYPES}

    @property
    def on_one_machine(self) -> bool:
        """A local or test run: loopback webhooks and model directories are fine."""
        return self.environment in ("local", "test")

    @model_validator(mode="after")
    def _default_migrate_on_start(self) -> "Settings":
        if self.migrate_on_start is None:
            self.migrate_on_start = self.on_one_machine
        return self

    @model_validator(mode="after")
    def _check_cloud_settings(self) -> "Settings":
        """Outside local and test runs, refuse settings that only make sense on one machine."""
        if self.environment in ("dev", "prod"):
            missing = [
                name
                for name, value in (
                    ("DATABASE_URL", self.database_url),
                    ("SIGNING_SECRET", self.signing_secret),
                )
                if value is None
            ]
            if self.inference_backend == "runpod" and self.runpod_api_key is None:
                missing.append("RUNPOD_API_KEY")
            if missing:
                raise ValueError(
                    f"ENVIRONMENT={self.environment} needs these settings: {', '.join(missing)}"
                )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
