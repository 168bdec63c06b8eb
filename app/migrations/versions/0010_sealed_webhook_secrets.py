"""Webhook secrets kept sealed (envelope encryption, as tenants' RunPod keys): the column holds
the sealed text, longer than a plain secret. The API seals what an earlier release kept in
plain text at its start (app/services/tenant_keys.py: rewrap_all).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("webhook_secrets", "secret", type_=sa.Text(), existing_nullable=False)


def downgrade() -> None:
    op.alter_column("webhook_secrets", "secret", type_=sa.String(100), existing_nullable=False)
