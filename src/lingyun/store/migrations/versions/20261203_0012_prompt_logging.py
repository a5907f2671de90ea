"""Prompt logging, off by default: a project's retention (NULL = off) and the table that holds
prompt and completion text for projects that turned it on, each row with its expiry.

Revision ID: 20261203_0012
Revises: 20261203_0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261203_0012"
down_revision = "20261203_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("prompt_log_retention_s", sa.Integer(), nullable=True))
    op.create_table(
        "prompt_logs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("completion", sa.Text(), nullable=False),
    )
    op.create_index("ix_prompt_logs_request_id", "prompt_logs", ["request_id"])
    op.create_index("ix_prompt_logs_project_id", "prompt_logs", ["project_id"])
    op.create_index("ix_prompt_logs_expires_at", "prompt_logs", ["expires_at"])


def downgrade() -> None:
    op.drop_table("prompt_logs")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("prompt_log_retention_s")
