"""Transcripts: a chunk's own metadata (a transcript's passage: its start and end in the audio,
in seconds), and a document's audio length when it is the transcript of audio.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("chunks", sa.Column("metadata", JSONB(), nullable=True))
    op.add_column("documents", sa.Column("audio_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("documents", "audio_seconds")
    op.drop_column("chunks", "metadata")
