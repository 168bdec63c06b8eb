"""Tenants: every API key belongs to one; conversations, documents, images and jobs are the
tenant's, and a document's or image's `source_id` is unique within its tenant. Existing keys
and data go to the tenant `default`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("api_keys", "conversations", "documents", "images", "jobs")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("tenant", sa.String(100), server_default="default"))
        op.alter_column(table, "tenant", nullable=False, server_default=None)
    op.drop_index("ix_conversations_user_updated", table_name="conversations")
    op.create_index(
        "ix_conversations_tenant_user", "conversations", ["tenant", "user_id", "updated_at"]
    )
    for table in ("documents", "images"):
        op.drop_constraint(f"{table}_source_id_key", table, type_="unique")
        op.create_unique_constraint(f"uq_{table}_tenant_source_id", table, ["tenant", "source_id"])
    op.create_index("ix_jobs_tenant", "jobs", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant", table_name="jobs")
    for table in ("documents", "images"):
        op.drop_constraint(f"uq_{table}_tenant_source_id", table, type_="unique")
        op.create_unique_constraint(f"{table}_source_id_key", table, ["source_id"])
    op.drop_index("ix_conversations_tenant_user", table_name="conversations")
    op.create_index("ix_conversations_user_updated", "conversations", ["user_id", "updated_at"])
    for table in TABLES:
        op.drop_column(table, "tenant")
