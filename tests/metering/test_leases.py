"""Credit leases: requests decided in memory, folded in batches, replayed after a crash.

Every test runs on SQLite and PostgreSQL. A lease is money the database set aside for one
journal; nothing here may let a set of journals spend past a balance or a budget, charge a
request twice, or leave money reserved once the leases are back.
"""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lingyun.errors import InsufficientQuotaError
from lingyun.metering import accounts
from lingyun.metering.deliveries import DeliveryLog
from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.journal import Journal
from lingyun.store.db import Database
from lingyun.store.ledger import BudgetPeriod, CreditLease, LedgerEntry, Reservation
from tests.metering.conftest import TenantFactory
from tests.metering.test_journal import PRICES, hold, ledger_sum

pytestmark = pytest.mark.anyio
D = Decimal
WORST = PRICES.cost(0, 0, 10)  # a default hold's worst case: 0.01


def journal_at(db: Database, path: Path, owner: str | None = None, **kw: float) -> Journal:
    owner = owner or f"gw-{secrets.token_hex(3)}"
    return Journal(db, owner=owner, deliveries=DeliveryLog(path / f"{owner}.log"), **kw)


def crash(journal: Journal) -> None:
    """The process dies: nothing is settled, folded or given back; the OS keeps the log."""
    for task in journal._tasks:
        task.cancel()
    if journal.deliveries is not None:
        journal.deliveries.close()


async def count(db: Database, model: type, **where: str) -> int:
    async with db.session() as s:
        q = select(func.count()).select_from(model)
        for name, value in where.items():
            q = q.where(getattr(model, name) == value)
        return int(await s.scalar(q) or 0)


async def settled(journal: Journal, h: Hold, completion: int, note: str = "served") -> None:
    journal.settle(Settlement(h, 0, 0, completion, 0, note))


async def test_leased_requests_write_no_rows_of_their_own_and_charge_exactly(
    db: Database, funded_tenant: TenantFactory, tmp_path: Path
) -> None:
    tenant, project = await funded_tenant(D("10"))
    journal = journal_at(db, tmp_path)
    await journal.start()
    try:
        holds = [hold(tenant, project) for _ in range(20)]
        for h in holds:
            await journal.reserve(h)
        assert all(h.leased and h.lease_id == holds[0].lease_id for h in holds)
        assert await count(db, CreditLease) == 1  # one grow covered all twenty
        assert await count(db, Reservation, tenant_id=tenant) == 0
        for i, h in enumerate(holds):
            await settled(journal, h, i % 10)
        await journal.drain()
        assert await count(db, LedgerEntry, tenant_id=tenant, kind="usage") == 20
        charged = sum((PRICES.cost(0, 0, i % 10) for i in range(20)), D(0))
        assert await ledger_sum(db, tenant) == -charged
        bal = await accounts.balance(db, tenant)
        assert bal.balance == D("10") - charged and bal.reserved > 0  # the lease is held
    finally:
        await journal.stop()
    bal = await accounts.balance(db, tenant)
    assert bal.reserved == 0 and bal.balance == D("10") - charged
    assert await count(db, CreditLease) == 0


async def test_leases_of_two_gateways_never_spend_past_the_balance(
    db: Database, funded_tenant: TenantFactory, tmp_path: Path
) -> None:
    """50 concurrent requests, each of worst case 0.01, on a balance of 0.10, split over
    two journals that each hold their own lease."""
    tenant, project = await funded_tenant(D("0.10"))
    gateways = [journal_at(db, tmp_path), journal_at(db, tmp_path)]
    for g in gateways:
        await g.start()

    async def one(i: int) -> bool:
        g, h = gateways[i % 2], hold(tenant, project)
        try:
            await g.reserve(h)
        except InsufficientQuotaError:
            return False
        await settled(g, h, 10)  # the whole worst case: nothing comes back
        return True

    try:
        served = sum(await asyncio.gather(*(one(i) for i in range(50))))
        for g in gateways:
            await g.drain()
    finally:
        for g in gateways:
            await g.stop()
    bal = await accounts.balance(db, tenant)
    assert 1 <= served <= 10
    assert bal.balance == D("0.10") - served * WORST >= 0
    assert (
        bal.reserved == 0 and await count(db, LedgerEntry, tenant_id=tenant, kind="usage") == served
    )


async def test_a_budget_bounds_what_leases_may_set_aside(
    db: Database, funded_tenant: TenantFactory, tmp_path: Path
) -> None:
    tenant, project = await funded_tenant(D("10"))
    await accounts.set_budget(db, "project", project, D("0.05"))
    journal = journal_at(db, tmp_path)
    await journal.start()
    try:
        admitted = []
        for _ in range(5):
            h = hold(tenant, project)
            await journal.reserve(h)
            admitted.append(h)
        assert admitted[0].budgets == [("project", project)]
        with pytest.raises(InsufficientQuotaError, match="monthly budget"):
            await journal.reserve(hold(tenant, project))
        for h in admitted:
            await settled(journal, h, 4)
    finally:
        await journal.stop()
    async with db.session() as s:
        period = await s.get(BudgetPeriod, ("project", project, "2026-11"))
    assert period is not None and period.reserved == 0 and period.spent == 5 * PRICES.cost(0, 0, 4)


async def test_a_crash_replays_each_leased_request_once_from_the_delivery_log(
    db: Database, funded_tenant: TenantFactory, tmp_path: Path
) -> None:
    tenant, project = await funded_tenant(D("1"))
    owner = f"gw-{secrets.token_hex(3)}"
    first = journal_at(db, tmp_path, owner, fold_s=3600)  # nothing folds on its own
    await first.start()
    folded, ended, streaming, unsent = (
        hold(tenant, project, prompt=8, output=50) for _ in range(4)
    )
    for h in (folded, ended, streaming, unsent):
        await first.reserve(h)
    first.settle(Settlement(folded, 3, 0, 7, 0, "served"))
    await first.drain()  # folded into the ledger before the crash
    first.settle(Settlement(ended, 3, 1, 9, 0, "served"))  # settled, not folded
    first.delivered(streaming.request_id, (3, 12))  # twelve tokens reached its client
    crash(first)
    assert await count(db, LedgerEntry, tenant_id=tenant, kind="usage") == 1

    for _ in range(2):  # a second restart finds nothing more to charge
        again = journal_at(db, tmp_path, owner)
        await again.start()
        await again.stop()
    async with db.session() as s:
        rows = await s.execute(
            select(LedgerEntry.entry_key, LedgerEntry.completion_tokens, LedgerEntry.note).where(
                LedgerEntry.tenant_id == tenant, LedgerEntry.kind == "usage"
            )
        )
        entries = {k: (c, n) for k, c, n in rows.all()}
    assert entries == {
        folded.request_id: (7, "served"),
        ended.request_id: (9, "served"),
        streaming.request_id: (12, "reconciled"),
    }  # and `unsent`, which reached no client, is not charged
    expected = PRICES.cost(3, 0, 7) + PRICES.cost(3, 1, 9) + PRICES.cost(3, 0, 12)
    bal = await accounts.balance(db, tenant)
    assert bal.balance == D("1") - expected and bal.reserved == 0
    assert await count(db, CreditLease) == 0


async def test_a_dead_gateways_lease_is_reclaimed_by_another(
    db: Database, funded_tenant: TenantFactory, tmp_path: Path
) -> None:
    tenant, project = await funded_tenant(D("1"))
    dead = journal_at(db, tmp_path, lease_s=0.3)
    await dead.start()
    await dead.reserve(hold(tenant, project))
    crash(dead)
    assert (await accounts.balance(db, tenant)).reserved > 0
    alive = journal_at(db, tmp_path, checkpoint_s=0.05, lease_s=0.3)
    await alive.start()
    try:
        # an idle gateway looks for nobody; one serving (holding a lease of its own) does
        served = hold(tenant, project)
        await alive.reserve(served)
        await settled(alive, served, 0)
        async with asyncio.timeout(60):  # the state: the dead one's lease is gone
            while await count(db, CreditLease, owner=dead.owner):  # noqa: ASYNC110 (the db)
                await asyncio.sleep(0.05)
    finally:
        await alive.stop()
    bal = await accounts.balance(db, tenant)
    assert bal.reserved == 0 and bal.balance == D("1")


async def test_an_idle_lease_goes_back_while_the_gateway_runs(
    db: Database, funded_tenant: TenantFactory, tmp_path: Path
) -> None:
    tenant, project = await funded_tenant(D("1"))
    journal = journal_at(db, tmp_path, checkpoint_s=0.05, lease_idle_s=0.2)
    await journal.start()
    try:
        h = hold(tenant, project)
        await journal.reserve(h)
        await settled(journal, h, 2)
        async with asyncio.timeout(60):
            while await count(db, CreditLease):  # noqa: ASYNC110 (the db)
                await asyncio.sleep(0.05)
        assert not journal._holding() or journal._committed != journal._committed_at_renewal
        bal = await accounts.balance(db, tenant)
        assert bal.reserved == 0 and bal.balance == D("1") - PRICES.cost(0, 0, 2)
    finally:
        await journal.stop()


async def test_a_free_quota_is_spent_per_request_and_money_then_leased(
    db: Database, funded_tenant: TenantFactory, tmp_path: Path
) -> None:
    tenant, project = await funded_tenant(D("1"))
    await accounts.grant_quota(db, tenant, "m", 15, None)
    journal = journal_at(db, tmp_path)
    await journal.start()
    try:
        free = hold(tenant, project)
        await journal.reserve(free)
        assert not free.leased and free.free_tokens == 10  # a reservation row, quota tokens
        await settled(journal, free, 10)
        await journal.drain()
        await journal.load_scopes()  # the quota has 5 tokens left: still per request
        partly = hold(tenant, project)
        await journal.reserve(partly)
        assert not partly.leased and partly.free_tokens == 5
        await settled(journal, partly, 10)
        await journal.drain()
        await journal.load_scopes()  # used up: money, from a lease
        paid = hold(tenant, project)
        await journal.reserve(paid)
        assert paid.leased
        await settled(journal, paid, 10)
    finally:
        await journal.stop()
    assert await ledger_sum(db, tenant) == -(PRICES.cost(0, 0, 5) + PRICES.cost(0, 0, 10))


async def test_a_lease_is_retired_when_a_budget_appears_over_it(
    db: Database, funded_tenant: TenantFactory, tmp_path: Path
) -> None:
    tenant, project = await funded_tenant(D("1"))
    journal = journal_at(db, tmp_path)
    await journal.start()
    try:
        before = hold(tenant, project)
        await journal.reserve(before)
        await accounts.set_budget(db, "tenant", tenant, D("0.5"))
        await journal.load_scopes()
        after = hold(tenant, project)
        await journal.reserve(after)
        assert after.lease_id != before.lease_id and after.budgets == [("tenant", tenant)]
        await settled(journal, before, 10)
        await settled(journal, after, 10)
        await journal.drain()
        await journal._return_idle()  # the retired lease goes back once nothing holds it
        await journal.drain()
        assert await count(db, CreditLease) == 1
    finally:
        await journal.stop()
    async with db.session() as s:
        period = await s.get(BudgetPeriod, ("tenant", tenant, "2026-11"))
    assert period is not None and period.reserved == 0 and period.spent == WORST
