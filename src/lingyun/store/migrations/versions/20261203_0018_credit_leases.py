"""Credit leases: a slice of an account's money each gateway spends from memory.

Revision ID: 20261203_0018
Revises: 20261203_0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261203_0018"
down_revision = "20261203_0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_leases",
        sa.Column("lease_id", sa.String(192), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("budgets", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_credit_leases_owner", "credit_leases", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_credit_leases_owner", "credit_leases")
    op.drop_table("credit_leases")
