"""Documents, their chunks and images, with pgvector embeddings and HNSW cosine indexes;
the sources of grounded answers on messages.

The vector sizes come from the settings the migration runs with (TEXT_EMBEDDING_DIM,
IMAGE_EMBEDDING_DIM): an HNSW index needs a fixed size.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)
        for name in ("created_at", "updated_at")
    ]


def _upload_columns() -> list[sa.Column]:
    """What documents and images both record about an upload."""
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("source_id", sa.String(200), nullable=False, unique=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("object_key", sa.String(500), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("metadata", postgresql.JSONB(), nullable=False),
    ]


def _hnsw_index(table: str) -> None:
    op.create_index(
        f"ix_{table}_embedding_hnsw",
        table,
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )


def upgrade() -> None:
    text_dim, image_dim = context.config.attributes["vector_dims"]
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.add_column("messages", sa.Column("sources", postgresql.JSONB(), nullable=True))

    op.create_table("documents", *_upload_columns(), *_timestamps())
    op.create_index("ix_documents_updated_at", "documents", ["updated_at"])
    op.create_table(
        "chunks",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "document_id",
            sa.Uuid(),
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ord", sa.Integer(), nullable=False),
        sa.Column("heading", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("embedding", Vector(text_dim), nullable=False),
    )
    op.create_index("ix_chunks_document_id", "chunks", ["document_id", "ord"])
    _hnsw_index("chunks")

    op.create_table(
        "images",
        *_upload_columns(),
        sa.Column("embedding", Vector(image_dim), nullable=False),
        *_timestamps(),
    )
    op.create_index("ix_images_updated_at", "images", ["updated_at"])
    _hnsw_index("images")


def downgrade() -> None:
    op.drop_table("images")
    op.drop_table("chunks")
    op.drop_table("documents")
    op.drop_column("messages", "sources")
