"""SQLAlchemy models: the API's tables in Postgres."""

import uuid
from datetime import date, datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def hnsw_cosine_index(name: str) -> Index:
    """An HNSW index on `embedding` for cosine distance (`<=>`)."""
    ops = {"embedding": "vector_cosine_ops"}
    return Index(name, "embedding", postgresql_using="hnsw", postgresql_ops=ops)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_conversations_tenant_user", "tenant", "user_id", "updated_at"),)


class Message(Base):
    __tablename__ = "messages"

    # Identity order is turn order: writes to one conversation are serialised by a row lock.
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str] = mapped_column(String(128))
    model_id: Mapped[str | None] = mapped_column(String(200))
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The chunks a grounded answer was given: [{document_id, source_id, title, chunk, score}].
    sources: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_messages_conversation_id", "conversation_id", "id"),)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    # Whose data the key reads and writes: conversations, documents, images, jobs.
    tenant: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the key: keys are 256-bit random, so a fast hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What the key may spend a month (UTC) on the stack's workers; None: no limit of its own.
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float)


class RateBucket(Base):
    """A key's token bucket, in Postgres so every instance draws from one: it holds up to the
    per-minute limit and refills at that rate; a request takes a token."""

    __tablename__ = "rate_buckets"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UploadColumns:
    """What `documents` and `images` both record about an upload."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(100))
    source_id: Mapped[str] = mapped_column(String(200))  # unique within the tenant
    title: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    object_key: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Document(UploadColumns, Base):
    """An uploaded document: its raw bytes in storage, its text in `chunks`; for the transcript
    of audio, the audio's length (its raw audio is replaced by the transcript's text after
    RETENTION_AUDIO_DAYS)."""

    __tablename__ = "documents"
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (
        Index("ix_documents_updated_at", "updated_at"),
        UniqueConstraint("tenant", "source_id", name="uq_documents_tenant_source_id"),
    )


class Chunk(Base):
    """A passage of a document with its text embedding; the vector size is TEXT_EMBEDDING_DIM,
    fixed when the table is made (see migration 0002)."""

    __tablename__ = "chunks"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    ord: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    embedding: Mapped[Any] = mapped_column(Vector())
    # A transcript's passage: {start, end} in seconds of the audio.
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)

    __table_args__ = (
        Index("ix_chunks_document_id", "document_id", "ord"),
        hnsw_cosine_index("ix_chunks_embedding_hnsw"),
    )


class Image(UploadColumns, Base):
    """An uploaded or generated image with its CLIP embedding (IMAGE_EMBEDDING_DIM); a
    generated one has none unless it was asked for (it is not found by search)."""

    __tablename__ = "images"

    embedding: Mapped[Any | None] = mapped_column(Vector())

    __table_args__ = (
        Index("ix_images_updated_at", "updated_at"),
        UniqueConstraint("tenant", "source_id", name="uq_images_tenant_source_id"),
        hnsw_cosine_index("ix_images_embedding_hnsw"),
    )


class Job(Base):
    """Work done asynchronously (`POST /v1/jobs`, `?async=true` uploads): parts queued on the
    workers, completed by RunPod's webhook or by polling, then finished by kind."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # queued, running, succeeded, failed
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When the poller looks at it next (RunPod's webhook usually finishes it before then).
    check_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_jobs_idempotency_key"),
        Index("ix_jobs_open", "check_at", postgresql_where=text("status IN ('queued', 'running')")),
    )


class JobPart(Base):
    """One call to a worker within a job."""

    __tablename__ = "job_parts"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker: Mapped[str] = mapped_column(String(16))
    input: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16))  # pending, submitted, done
    runpod_id: Mapped[str | None] = mapped_column(String(200))
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")


class Deployment(Base):
    """A model a tenant deployed at run time (`POST /v1/deployments`): its own RunPod template
    and endpoint, made and tracked by the API (not a Pulumi resource)."""

    __tablename__ = "deployments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))  # unique among the tenant's live ones
    model: Mapped[str] = mapped_column(String(300))
    task: Mapped[str] = mapped_column(String(16))  # generate, embed, image
    # Made in the tenant's own RunPod account (its registered key), not the stack's.
    own_account: Mapped[bool] = mapped_column(Boolean, server_default=false())
    gpu: Mapped[str | None] = mapped_column(String(100))  # asked for: a GPU type or a tier
    gpu_type: Mapped[str | None] = mapped_column(String(100))  # chosen
    workers_min: Mapped[int] = mapped_column(Integer)
    workers_max: Mapped[int] = mapped_column(Integer)
    idle_timeout: Mapped[int] = mapped_column(Integer)
    env: Mapped[dict[str, str]] = mapped_column(JSONB)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # Held only until the template carries it (HF_TOKEN in its env).
    hf_token: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24))
    error: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[str | None] = mapped_column(String(100))
    endpoint_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Not ready by then: failed. When the orchestrator looks at it next (None: nothing to do).
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    check_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        Index(
            "uq_deployments_tenant_name",
            "tenant",
            "name",
            unique=True,
            postgresql_where=text("status <> 'deleted'"),
        ),
        Index("ix_deployments_tenant_created", "tenant", "created_at"),
        Index("ix_deployments_due", "check_at", postgresql_where=text("check_at IS NOT NULL")),
    )


class DeploymentEvent(Base):
    """A deployment's change of status, with when and why."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookDelivery(Base):
    """One attempt at notifying a deployment's webhook."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(24))  # the status notified: ready, failed
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TurnReplay(Base):
    """The answer a chat turn stored under its request's Idempotency-Key: a retry of the same
    request replays it (another request with the key is refused)."""

    __tablename__ = "turn_replays"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    answer: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookSecret(Base):
    """The secret a tenant's webhook notifications are signed with (shown once, when made or
    rotated), sealed (app/core/envelope.py)."""

    __tablename__ = "webhook_secrets"

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TenantRunPodKey(Base):
    """A tenant's own RunPod API key, sealed (app/core/envelope.py): its deployments are made,
    served and removed in its account."""

    __tablename__ = "tenant_runpod_keys"

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(64))
    hint: Mapped[str] = mapped_column(String(8))  # the key's last characters, to tell keys apart
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Usage(Base):
    """What one request took of a worker (app/services/usage.py): its counts, how long it waited
    for and ran on the worker, and its estimated cost (None: the GPU's price is unknown);
    `billed_to` "tenant" for a deployment in the tenant's own RunPod account."""

    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    api_key_id: Mapped[uuid.UUID | None]
    route: Mapped[str] = mapped_column(String(100))
    worker: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(300))
    deployment_id: Mapped[uuid.UUID | None]
    endpoint: Mapped[str] = mapped_column(String(200))
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    items: Mapped[int | None] = mapped_column(Integer)  # texts or images embedded, images drawn
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    pixel_steps: Mapped[int | None] = mapped_column(BigInteger)  # images x pixels x steps
    delay_ms: Mapped[float | None] = mapped_column(Float)
    execution_ms: Mapped[float] = mapped_column(Float)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    billed_to: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_usage_tenant_created", "tenant", "created_at"),)


class Spend(Base):
    """What a key spent on the stack's workers in a month (UTC), kept as its usage is written:
    budgets are checked against it."""

    __tablename__ = "spend"

    api_key_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    usd: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_spend_tenant_month", "tenant", "month"),)


class TenantBudget(Base):
    """A tenant's monthly budget: its keys' requests to workers are refused past it; at
    `alert_percent` of it, `alert_url` is notified once a month (`alerted_month`)."""

    __tablename__ = "tenant_budgets"

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    monthly_usd: Mapped[float] = mapped_column(Float)
    alert_percent: Mapped[int] = mapped_column(Integer)
    alert_url: Mapped[str | None] = mapped_column(Text)
    alerted_month: Mapped[date | None] = mapped_column(Date)
