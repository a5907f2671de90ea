"""Upstream channels (operator overrides and the gateway's live breaker state) and LoRA
adapters added at run time: both new in issue 16.

Revision ID: 20261202_0009
Revises: 20261202_0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_0009"
down_revision = "20261202_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_channels",
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_by", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("base_url", sa.String(length=512), nullable=True),
        sa.Column("model", sa.String(length=256), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("error_rate", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("transitions", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("deployment", "channel"),
    )

    op.create_table(
        "lora_adapters",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("base", sa.String(length=128), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("lora_adapters")
    op.drop_table("upstream_channels")
