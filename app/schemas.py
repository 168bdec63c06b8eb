"""Request and response bodies of the public API."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    StringConstraints,
    field_validator,
)

MAX_MESSAGE_CHARS = 32_000
MAX_TOKENS = 8192

Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=r"\S")]


NUL = "\x00"  # Postgres text and jsonb cannot hold U+0000


def holds_nul(value: Any) -> bool:
    """Whether a string in `value` (or in its lists and dicts, keys included) holds U+0000."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_nul(item) for item in value)
    return False


class Strict(BaseModel):
    """A request body: unknown fields, NaN and Infinity, and the NUL character are refused
    (422 naming the field), so nothing that reaches Postgres can fail to be stored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if holds_nul(value):
            raise ValueError("must not contain the NUL character (U+0000)")
        return value


class ChatTurn(Strict):
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)]


class RagOptions(Strict):
    """Ground the answer in the `k` best chunks scoring at least `min_score` (cosine)."""

    k: int = Field(4, ge=1, le=20)
    min_score: float = Field(0.0, ge=-1.0, le=1.0)


class Source(BaseModel):
    document_id: uuid.UUID
    source_id: str
    title: str
    chunk: str
    score: float
    # A transcript's passage: where it is in the audio ({start, end}, seconds).
    chunk_metadata: dict[str, Any] | None = None


class JsonSchemaFormat(Strict):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field("answer", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(
        alias="schema", description="the JSON Schema every answer is valid in"
    )
    strict: bool = True


class ResponseFormat(Strict):
    """OpenAI's `response_format`: the model answers JSON valid in `json_schema.schema` (its
    decoding is constrained by the schema's grammar)."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


class ChatRequest(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"user_id": "alice", "message": "What does Tandem deploy?", "max_tokens": 64}
            ]
        }
    )
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"\S")]
    message: Text
    conversation_id: uuid.UUID | None = None
    history: list[ChatTurn] | None = Field(None, max_length=200)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    stream: bool = False
    rag: RagOptions | None = None
    response_format: ResponseFormat | None = None
    model: str | None = Field(
        None,
        max_length=300,
        description="the name or id of one of the tenant's deployments; default: the stack's "
        "chat model",
    )


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatResponse(BaseModel):
    assistant_message: str
    conversation_id: uuid.UUID
    request_id: str
    model_id: str
    usage: Usage
    history_used: int = Field(
        description="How many earlier messages the model was given: when a conversation "
        "outgrows the model's context, its oldest turns are left out"
    )
    sources: list[Source] | None = None  # with `rag`: what the answer was grounded in
    parsed: Any = Field(
        None,
        description="With `response_format`: the answer parsed as JSON, valid in its schema "
        "(null when `max_tokens` cut it short)",
    )


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    role: str
    content: str
    request_id: str
    model_id: str | None
    usage: dict[str, Any] | None
    sources: list[dict[str, Any]] | None
    created_at: datetime


class ConversationSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: str
    title: str
    created_at: datetime
    updated_at: datetime


class ConversationOut(ConversationSummary):
    messages: list[MessageOut]


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]


METADATA_KEY = r"^[A-Za-z0-9_-]{1,64}$"
MetadataKey = Annotated[str, StringConstraints(pattern=METADATA_KEY)]
Metadata = Annotated[dict[MetadataKey, str | int | float | bool], Field(max_length=32)]
SourceId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]
Title = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=r"\S")]


class DocumentIn(Strict):
    """A document given as text (Markdown headings are kept as sections)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source_id": "handbook/deploys.md",
                    "text": "# Deploys\n\nEvery merge to main deploys dev.",
                    "metadata": {"team": "platform"},
                }
            ]
        }
    )

    source_id: SourceId
    title: Title | None = None
    text: Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]
    metadata: Metadata = Field(default_factory=dict)


class UploadOut(BaseModel):
    id: uuid.UUID
    source_id: str
    title: str
    content_type: str
    size_bytes: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class DocumentOut(UploadOut):
    chunks: int
    audio_seconds: float | None = None  # a transcript's: the audio's length


class ImageIn(Strict):
    """An image to fetch from `url` (http or https, a public address)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"url": "https://example.com/cat.png", "metadata": {"album": "pets"}}]
        }
    )

    url: HttpUrl
    source_id: SourceId | None = None  # default: the URL
    title: Title | None = None
    metadata: Metadata = Field(default_factory=dict)


class SearchHit(BaseModel):
    document_id: uuid.UUID
    source_id: str
    title: str
    heading: str | None  # the section a text chunk is under; None for images
    chunk: str | None  # the matching text; None for images
    score: float
    metadata: dict[str, Any]
    # A transcript's passage: where it is in the audio ({start, end}, seconds); else None.
    chunk_metadata: dict[str, Any] | None = None


class SearchResponse(BaseModel):
    hits: list[SearchHit]


class EmbedJobIn(Strict):
    """Text embeddings computed asynchronously, in batches."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"kind": "embed", "texts": ["first passage", "second passage"]}]
        }
    )

    kind: Literal["embed"]
    texts: list[Annotated[str, StringConstraints(min_length=1, max_length=8_000)]] = Field(
        min_length=1, max_length=10_000
    )


JobStatus = Literal["queued", "running", "succeeded", "failed"]
T = TypeVar("T")


class JobSummary(BaseModel):
    job_id: uuid.UUID
    kind: str
    status: JobStatus
    error: str | None
    parts_done: int
    parts: int
    created_at: datetime
    updated_at: datetime


class JobOut(JobSummary):
    result: dict[str, Any] | None


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first; `next_cursor` asks for the next (None: the last)."""

    items: list[T]
    next_cursor: str | None


DeploymentTask = Literal["generate", "embed", "image"]
DeploymentStatus = Literal[
    "validating",
    "selecting_gpu",
    "creating_endpoint",
    "downloading_model",
    "loading_model",
    "ready",
    "failed",
    "webhook_failed",
    "deleting",
    "deleted",
]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")]


def _visible_ascii(key: SecretStr) -> SecretStr:
    if not all("!" <= c <= "~" for c in key.get_secret_value()):
        raise ValueError("a RunPod API key is visible ASCII: no spaces or other characters")
    return key


RunPodKey = Annotated[
    SecretStr,
    Field(
        min_length=8,
        max_length=200,
        description="a RunPod API key with read and write access; never shown again",
    ),
    AfterValidator(_visible_ascii),
]


class DeploymentIn(Strict):
    """A model to deploy as a RunPod endpoint of its own."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "Qwen/Qwen2.5-0.5B-Instruct",
                    "task": "generate",
                    "gpu": "24gb",
                    "workers_max": 1,
                    "webhook_url": "https://example.com/hooks/tandem",
                }
            ]
        }
    )
    model: str = Field(
        min_length=1,
        max_length=300,
        pattern=r"^(/\S+|[\w.-]+/[\w.-]+)$",
        description="a Hugging Face model id (`org/name`), or in local mode a model directory",
        examples=["Qwen/Qwen2.5-0.5B-Instruct"],
    )
    name: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="what requests name as `model` (default: from the model id); unique",
    )
    task: DeploymentTask | None = Field(
        None,
        description="generate (chat), embed or image (a diffusers pipeline); default: the "
        "model's own (a diffusers repository is image, an encoder embed, others generate)",
    )
    gpu: str | None = Field(
        None,
        validation_alias=AliasChoices("gpu", "gpu_tier"),
        description="a GPU type of the allowed list, or a tier such as `24gb` (also as "
        "`gpu_tier`); default: the smallest allowed that holds the model",
    )
    workers_min: int = Field(0, ge=0, le=100)
    workers_max: int = Field(1, ge=1, le=100)
    idle_timeout: int = Field(
        5, ge=1, le=3600, description="seconds a worker idles before it stops"
    )
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=32
    )
    webhook_url: HttpUrl | None = Field(None, description="notified when ready or failed")
    hf_token: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[!-~]+$",  # a Hugging Face access token: visible ASCII, sent as a header
        description="for gated models; never shown again",
    )
    runpod_key: RunPodKey | None = Field(
        None,
        description="registered as the tenant's RunPod key first (PUT /v1/tenant/runpod-key): "
        "the deployment is made in that account, as every later one",
    )


class RunPodKeyIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"runpod_key": "rpa_0123456789ABCDEF"}]}
    )

    runpod_key: RunPodKey


class DeploymentCreated(BaseModel):
    deployment_id: uuid.UUID
    name: str
    status: DeploymentStatus
    model: str
    estimated_ready_seconds: int
    created_at: datetime
    webhook_secret: str | None = Field(
        None,
        description="signs the webhook's notifications: shown once, on the tenant's first "
        "deployment with a webhook_url",
    )


class DeploymentEventOut(BaseModel):
    status: DeploymentStatus
    detail: str | None
    at: datetime


class WebhookDeliveryOut(BaseModel):
    event: str
    attempt: int
    status_code: int | None
    error: str | None
    at: datetime


class DeploymentSummary(BaseModel):
    id: uuid.UUID
    name: str
    model: str
    task: DeploymentTask
    status: DeploymentStatus
    endpoint_id: str | None
    created_at: datetime


class DeploymentWorkerOut(BaseModel):
    id: str
    status: str = Field(description="RunPod's: RUNNING, IDLE, INITIALIZING, THROTTLED, UNHEALTHY")
    gpu_type: str | None
    data_center: str | None
    stale: bool = Field(description="of an older release, being replaced")


class DeploymentOut(DeploymentSummary):
    own_account: bool = Field(
        description="in the tenant's own RunPod account (PUT /v1/tenant/runpod-key), not the "
        "stack's"
    )
    gpu: str | None
    gpu_type: str | None = Field(description="the RunPod GPU pool chosen (e.g. ADA_24)")
    workers_min: int
    workers_max: int
    idle_timeout: int
    webhook_url: str | None
    error: str | None
    updated_at: datetime
    events: list[DeploymentEventOut]
    deliveries: list[WebhookDeliveryOut]
    workers: list[DeploymentWorkerOut] = Field(
        default_factory=list,
        description="its endpoint's workers as RunPod lists them now (none when it has no "
        "endpoint or RunPod cannot be asked)",
    )


class ErrorDetail(BaseModel):
    code: str = Field(examples=["validation_error"], description="stable, for programs")
    message: str = Field(examples=["message: String should have at least 1 character"])
    type: str = Field(
        examples=["invalid_request_error"],
        description="OpenAI's error type: invalid_request_error, authentication_error, "
        "permission_error, rate_limit_error or server_error",
    )
    param: str | None = Field(None, description="the request field at fault, when one is")
    request_id: str = Field(description="also in the X-Request-ID header; quote it to support")


class ErrorBody(BaseModel):
    """The one shape of every error: OpenAI's, with the request id."""

    error: ErrorDetail


_ERRORS = {
    400: "A request the model's OpenAI serving refused: the message names the field",
    401: "No valid API key",
    403: "Not allowed to this tenant: the message says how it could be",
    404: "Not found (another tenant's is not found either)",
    413: "A body or an input over a limit",
    409: "A conflict: the name is taken, or the deployment is not ready (its status says)",
    415: "A file type that is not supported",
    422: "Input to fix: the message names the field",
    429: "Over the rate limit: retry after Retry-After seconds",
    502: "A worker failed",
    503: "The database or RunPod is unreachable, or a model is still loading",
    504: "A worker ran past the timeout",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for `statuses`, each with the error shape."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        responses[status] = {"model": ErrorBody, "description": _ERRORS[status]}
        if status == 429:
            retry = {"description": "seconds to wait", "schema": {"type": "integer"}}
            responses[status]["headers"] = {"Retry-After": retry}
    return responses
