"""Generated images: an image is CLIP-embedded (and found by search) only when asked, so its
embedding may be empty.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("images", "embedding", nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM images WHERE embedding IS NULL")
    op.alter_column("images", "embedding", nullable=False)
