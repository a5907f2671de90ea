"""Serving: the replica registry carries each replica's secret.

Replicas refuse requests without the secret their supervisor gave them. A gateway that
routes to replicas another gateway started (several gateways on one PostgreSQL) reads the
secret from the registry row beside the address; whoever can read the database can already
change every key and price, so it adds no new reader.

Revision ID: 20261202_0006
Revises: 20261127_0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_0006"
down_revision = "20261127_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("serving_replicas") as batch:
        batch.add_column(sa.Column("secret", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("serving_replicas") as batch:
        batch.drop_column("secret")
