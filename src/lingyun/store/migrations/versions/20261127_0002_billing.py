"""Billing: prices, ledger, reservations, accounts and budgets (owned by metering/).

Placeholder until the owning change fills it in; the chain of revisions is fixed in advance so
that parallel work does not create two heads.
"""

from __future__ import annotations

revision = "20261127_0002"
down_revision = "20261127_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
