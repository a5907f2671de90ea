"""Billing: prices, ledger, reservations, accounts and budgets (owned by metering/).

Metering needs durable reservations and an append-only ledger before a request may reach an
engine; balances, budgets and free quotas are projections kept beside them. Money columns are
integer billionths (exact on SQLite too, where NUMERIC would be stored as a float).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261127_0002"
down_revision = "20261127_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_leases",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )
    op.create_table(
        "accounts",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("free_only", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "budget_periods",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "scope_id", "period"),
    )
    op.create_table(
        "budgets",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=32), nullable=False),
        sa.Column("monthly_limit", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "scope_id"),
    )
    op.create_table(
        "free_quotas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("granted_tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reserved_tokens", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "model", "expires_at"),
    )
    with op.batch_alter_table("free_quotas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_free_quotas_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_key", sa.String(length=96), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=True),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("free_tokens", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("input_per_m", sa.BigInteger(), nullable=True),
        sa.Column("cached_input_per_m", sa.BigInteger(), nullable=True),
        sa.Column("output_per_m", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_key"),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_tenant_time", ["tenant_id", "created_at"], unique=False)

    op.create_table(
        "prices",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("input_per_m", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_per_m", sa.BigInteger(), nullable=True),
        sa.Column("output_per_m", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_output_per_m", sa.BigInteger(), nullable=True),
        sa.Column("batch_multiplier", sa.BigInteger(), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", "tenant_id"),
    )
    op.create_table(
        "reservations",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("free_tokens", sa.Integer(), nullable=False),
        sa.Column("quota_id", sa.Integer(), nullable=True),
        sa.Column("prices", sa.JSON(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index("ix_reservations_state", ["state"], unique=False)


def downgrade() -> None:
    op.drop_table("gateway_leases")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_state")

    op.drop_table("reservations")
    op.drop_table("prices")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_tenant_time")

    op.drop_table("ledger_entries")
    with op.batch_alter_table("free_quotas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_free_quotas_tenant_id"))

    op.drop_table("free_quotas")
    op.drop_table("budgets")
    op.drop_table("budget_periods")
    op.drop_table("accounts")
