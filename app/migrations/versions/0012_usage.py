"""Usage and budgets: a row per request's work on a worker (what it took, how long RunPod ran it,
what it cost), each key's spend per month (what budgets are checked against, in the key's own
round trip), monthly budgets per key and per tenant.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("worker", sa.String(32), nullable=False),
        sa.Column("model", sa.String(300), nullable=True),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("items", sa.Integer(), nullable=True),
        sa.Column("audio_seconds", sa.Float(), nullable=True),
        sa.Column("pixel_steps", sa.BigInteger(), nullable=True),
        sa.Column("delay_ms", sa.Float(), nullable=True),
        sa.Column("execution_ms", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("billed_to", sa.String(8), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("ix_usage_tenant_created", "usage", ["tenant", "created_at"])
    op.create_table(
        "spend",
        sa.Column("api_key_id", sa.Uuid(), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("usd", sa.Float(), nullable=False),
    )
    op.create_index("ix_spend_tenant_month", "spend", ["tenant", "month"])
    op.add_column("api_keys", sa.Column("monthly_budget_usd", sa.Float(), nullable=True))
    op.create_table(
        "tenant_budgets",
        sa.Column("tenant", sa.String(100), primary_key=True),
        sa.Column("monthly_usd", sa.Float(), nullable=False),
        sa.Column("alert_percent", sa.Integer(), nullable=False),
        sa.Column("alert_url", sa.Text(), nullable=True),
        sa.Column("alerted_month", sa.Date(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("tenant_budgets")
    op.drop_column("api_keys", "monthly_budget_usd")
    op.drop_table("spend")
    op.drop_table("usage")
