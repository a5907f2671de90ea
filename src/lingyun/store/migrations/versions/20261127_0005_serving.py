"""Serving: deployment leases, the replica registry and follower load (owned by serving/).

Several ``lingyun serve`` processes share one PostgreSQL. Exactly one of them must start a
deployment's replicas (else every gateway would start its own set), and the others must find
those replicas to route to them, and report their traffic so the owner scales for all. A
lease row per deployment, a registry of the owner's replicas and a load row per gateway and
deployment do that through the database every gateway already has; no cluster protocol.

Revision ID: 20261127_0005
Revises: 20261127_0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261127_0005"
down_revision = "20261127_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serving_leases",
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("deployment"),
    )
    op.create_table(
        "serving_replicas",
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("replica_id", sa.String(length=160), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("base_url", sa.String(length=512), nullable=False),
        sa.Column("model_id", sa.String(length=256), nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("max_inflight", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("deployment", "replica_id"),
    )
    op.create_table(
        "serving_load",
        sa.Column("gateway", sa.String(length=255), nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("inflight", sa.Integer(), nullable=False),
        sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "deployment"),
    )


def downgrade() -> None:
    op.drop_table("serving_load")
    op.drop_table("serving_replicas")
    op.drop_table("serving_leases")
