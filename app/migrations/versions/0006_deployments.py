"""Deployments: models tenants deploy at run time as RunPod endpoints, with every change of
status, the webhook deliveries, and each tenant's webhook signing secret.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _events(table: str, *columns: sa.Column) -> None:
    """A table of things that happened to a deployment, in order."""
    op.create_table(
        table,
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "deployment_id",
            sa.Uuid(),
            sa.ForeignKey("deployments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        *columns,
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index(f"ix_{table}_deployment_id", table, ["deployment_id"])


def upgrade() -> None:
    now = sa.func.now()
    op.create_table(
        "deployments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("gpu", sa.String(100)),
        sa.Column("gpu_type", sa.String(100)),
        sa.Column("workers_min", sa.Integer(), nullable=False),
        sa.Column("workers_max", sa.Integer(), nullable=False),
        sa.Column("idle_timeout", sa.Integer(), nullable=False),
        sa.Column("env", JSONB(), nullable=False),
        sa.Column("webhook_url", sa.Text()),
        sa.Column("hf_token", sa.Text()),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("template_id", sa.String(100)),
        sa.Column("endpoint_id", sa.String(100)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("check_at", sa.DateTime(timezone=True), server_default=now),
    )
    op.create_index(
        "uq_deployments_tenant_name",
        "deployments",
        ["tenant", "name"],
        unique=True,
        postgresql_where=sa.text("status <> 'deleted'"),
    )
    op.create_index("ix_deployments_tenant_created", "deployments", ["tenant", "created_at"])
    op.create_index(
        "ix_deployments_due",
        "deployments",
        ["check_at"],
        postgresql_where=sa.text("check_at IS NOT NULL"),
    )
    _events(
        "deployment_events",
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("detail", sa.Text()),
    )
    _events(
        "webhook_deliveries",
        sa.Column("event", sa.String(24), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("error", sa.Text()),
    )
    op.create_table(
        "webhook_secrets",
        sa.Column("tenant", sa.String(100), primary_key=True),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
    )


def downgrade() -> None:
    for table in ("webhook_secrets", "webhook_deliveries", "deployment_events", "deployments"):
        op.drop_table(table)
