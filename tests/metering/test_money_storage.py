"""Money is exact in the database: no float anywhere, SQLite included."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from lingyun.metering import accounts
from lingyun.store.db import Database
from lingyun.store.ledger import Money
from tests.metering.conftest import TenantFactory

pytestmark = pytest.mark.anyio


async def test_large_balances_keep_every_billionth(
    db: Database, funded_tenant: TenantFactory
) -> None:
    tenant, _ = await funded_tenant(Decimal("123456789.123456789"))  # 18 digits: beyond a float
    await accounts.credit(db, tenant, Decimal("0.000000001"))
    view = await accounts.balance(db, tenant)
    assert view.balance == Decimal("123456789.123456790")
    assert view.ledger_sum == view.balance
    async with db.session() as s:
        kind = await s.scalar(text("SELECT 1 FROM accounts WHERE tenant_id = :t"), {"t": tenant})
        stored = await s.scalar(
            text("SELECT balance FROM accounts WHERE tenant_id = :t"), {"t": tenant}
        )
    assert kind == 1 and isinstance(stored, int)  # integer billionths, never a float


def test_more_than_nine_places_is_refused_not_rounded() -> None:
    with pytest.raises(ValueError, match="9 decimal places"):
        Money().process_bind_param(Decimal("0.0000000001"), None)
