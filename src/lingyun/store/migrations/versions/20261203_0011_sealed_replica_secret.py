"""Room for a sealed replica secret: a Fernet token of a 43-character secret is 140
characters, more than the 128 the plain secret had (PostgreSQL refused the row, so a group's
owner published nothing).

Revision ID: 20261203_0011
Revises: 20261202_0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261203_0011"
down_revision = "20261202_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("serving_replicas") as batch:
        batch.alter_column("secret", type_=sa.String(length=512), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("serving_replicas") as batch:
        batch.alter_column("secret", type_=sa.String(length=128), existing_nullable=True)
