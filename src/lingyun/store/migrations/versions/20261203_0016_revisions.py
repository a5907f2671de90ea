"""A revision counter per topic for the change feed: gateways reload prices, deployments,
grants, limits, channel overrides and billing scopes when it moves, instead of polling each
table every second. The triggers that bump it are (re)installed after every upgrade by
``lingyun.store.revisions.install``, since SQLite's batch table rebuilds drop them.

Revision ID: 20261203_0016
Revises: 20261203_0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261203_0016"
down_revision = "20261203_0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revisions",
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("revisions")  # its triggers go with the function below on PostgreSQL
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS lingyun_bump_revision() CASCADE")
