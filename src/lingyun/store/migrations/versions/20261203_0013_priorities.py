"""Priorities for projects and keys: the capacity queue serves interactive requests before
standard ones and standard before batch (admission/capacity.py); a key's own priority
overrides its project's, and neither set means standard.

Revision ID: 20261203_0013
Revises: 20261203_0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261203_0013"
down_revision = "20261203_0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("projects", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("priority", sa.String(length=16), nullable=True))


def downgrade() -> None:
    for table in ("projects", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("priority")
