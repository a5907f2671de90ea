"""Admission: rate-limit settings per tenant, project, key and model (owned by admission/).

Placeholder until the owning change fills it in; the chain of revisions is fixed in advance so
that parallel work does not create two heads.
"""

from __future__ import annotations

revision = "20261127_0004"
down_revision = "20261127_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
