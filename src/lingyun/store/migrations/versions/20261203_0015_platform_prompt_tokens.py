"""Usage rows record the platform's own cost of mid-stream failover: the prompt tokens a
sibling re-prefilled to continue a stream whose replica died (never billed to the tenant).

Revision ID: 20261203_0015
Revises: 20261203_0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261203_0015"
down_revision = "20261203_0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(
            sa.Column("platform_prompt_tokens", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("platform_prompt_tokens")
