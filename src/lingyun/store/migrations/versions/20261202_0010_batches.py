"""Files and batches: the OpenAI Files and Batch API (uploaded inputs, batch jobs, and one
durable outcome row per batch line, so a restarted server resumes without running a line
twice).

Revision ID: 20261202_0010
Revises: 20261202_0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_0010"
down_revision = "20261202_0009"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_files_owner", "files", ["tenant_id", "project_id", "created_at"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("input_file_id", sa.String(length=40), nullable=False),
        sa.Column("completion_window", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("output_file_id", sa.String(length=40), nullable=True),
        sa.Column("error_file_id", sa.String(length=40), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("output_expires_after_s", sa.Integer(), nullable=True),
        *(sa.Column(n, sa.Integer(), nullable=False) for n in ("total", "completed", "failed")),
        *(
            sa.Column(n, sa.BigInteger(), nullable=False)
            for n in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
        ),
        _ts("created_at", nullable=False),
        _ts("in_progress_at"),
        _ts("expires_at", nullable=False),
        *(
            _ts(n)
            for n in (
                "finalizing_at",
                "completed_at",
                "failed_at",
                "expired_at",
                "cancelling_at",
                "cancelled_at",
            )
        ),
        sa.Column("owner", sa.String(length=128), nullable=True),
        _ts("lease_until"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batches_owner", "batches", ["tenant_id", "project_id", "created_at"])
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "batch_results",
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.String(length=512), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        *(
            sa.Column(n, sa.Integer(), nullable=False)
            for n in ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens")
        ),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "line"),
    )


def downgrade() -> None:
    op.drop_table("batch_results")
    op.drop_index("ix_batches_status", table_name="batches")
    op.drop_index("ix_batches_owner", table_name="batches")
    op.drop_table("batches")
    op.drop_index("ix_files_owner", table_name="files")
    op.drop_table("files")
