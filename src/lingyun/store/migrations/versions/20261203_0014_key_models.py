"""A key's model allow-list: a key may be narrowed to some of its tenant's granted models
(NULL: every granted model), so a leaked key for one app cannot spend on the others.

Revision ID: 20261203_0014
Revises: 20261203_0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261203_0014"
down_revision = "20261203_0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("models", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("models")
