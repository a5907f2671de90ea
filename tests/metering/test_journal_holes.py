"""The holes a read of the money path found, each tried against a real database.

Every test here failed before its fix: a cancelled admission leaked its reservation, one
out-of-range settlement stopped billing for everyone, reconciliation charged requests that
never reached an engine, charges could exceed the hold (balances below zero), free quotas
were spent in a different order on SQLite and PostgreSQL, and settled reservations were
kept forever.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from lingyun.errors import ServiceUnavailableError
from lingyun.metering import accounts
from lingyun.metering.holds import Settlement
from lingyun.metering.journal import Journal
from lingyun.store.db import Database
from lingyun.store.ledger import GatewayLease, LedgerEntry, Reservation
from tests.metering.conftest import TenantFactory
from tests.metering.test_journal import hold, ledger_sum

pytestmark = pytest.mark.anyio
D = Decimal
# A bound on how long a drain may take before we call it stuck (not a timing assert: a
# healthy drain takes milliseconds; a stuck one never ends).
STUCK_S = 60


async def _reservations(db: Database, tenant: str) -> dict[str, str]:
    async with db.session() as s:
        rows = await s.execute(
            select(Reservation.request_id, Reservation.state).where(Reservation.tenant_id == tenant)
        )
        return {str(r): str(st) for r, st in rows.all()}


async def test_a_cancelled_admission_leaves_nothing_reserved(
    db: Database, funded_tenant: TenantFactory
) -> None:
    tenant, project = await funded_tenant(D("1"))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        h = hold(tenant, project, output=10)
        task = asyncio.ensure_future(journal.reserve(h))
        await asyncio.sleep(0)  # queued for the next commit, not yet decided
        task.cancel()  # the client went away while its reservation was being written
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(journal.drain(), STUCK_S)
    finally:
        await journal.stop()
    bal = await accounts.balance(db, tenant)
    assert bal.reserved == 0 and bal.balance == D("1")
    assert "open" not in (await _reservations(db, tenant)).values()


async def test_a_poisoned_settlement_is_refused_alone(
    db: Database, funded_tenant: TenantFactory
) -> None:
    good_tenant, good_project = await funded_tenant(D("1"))
    bad_tenant, bad_project = await funded_tenant(D("1"))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        good, bad = hold(good_tenant, good_project), hold(bad_tenant, bad_project)
        await journal.reserve(good)
        await journal.reserve(bad)
        # an engine reported a token count no column can hold
        journal.settle(Settlement(bad, 10**20, 0, 10**20, 0, "served"))
        journal.settle(Settlement(good, 0, 0, 4, 0, "served"))
        await asyncio.wait_for(journal.drain(), STUCK_S)
        after = hold(good_tenant, good_project)
        await asyncio.wait_for(journal.reserve(after), STUCK_S)  # billing goes on
        journal.settle(Settlement(after, 0, 0, 1, 0, "served"))
        await asyncio.wait_for(journal.drain(), STUCK_S)
    finally:
        await asyncio.wait_for(journal.stop(), STUCK_S)
    assert await ledger_sum(db, good_tenant) == D("-0.005")
    # the poisoned one is charged at most its hold, and its hold is not left reserved
    bad_bal = await accounts.balance(db, bad_tenant)
    assert bad_bal.reserved == 0 and bad_bal.balance >= 0
    assert bad_bal.balance == bad_bal.ledger_sum


async def test_reconciliation_charges_nothing_for_a_request_that_never_reached_an_engine(
    db: Database, funded_tenant: TenantFactory
) -> None:
    tenant, project = await funded_tenant(D("1"))
    owner = f"gw-{secrets.token_hex(3)}"
    crashed = Journal(db, owner=owner, checkpoint_s=0.05)
    await crashed.start()
    h = hold(tenant, project, prompt=800, output=50)
    await crashed.reserve(h)  # reserved, then the process dies before the engine is called
    for task in crashed._tasks:
        task.cancel()
    restarted = Journal(db, owner=owner)
    await restarted.start()
    await restarted.stop()
    assert await ledger_sum(db, tenant) == 0
    bal = await accounts.balance(db, tenant)
    assert bal.reserved == 0 and bal.balance == D("1")


async def test_a_charge_never_exceeds_its_hold(db: Database, funded_tenant: TenantFactory) -> None:
    tenant, project = await funded_tenant(D("0.01"))  # exactly one 10-token hold
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        h = hold(tenant, project, output=10)
        await journal.reserve(h)
        journal.settle(Settlement(h, 0, 0, 50, 0, "served"))  # the engine overran the bound
        await journal.drain()
    finally:
        await journal.stop()
    bal = await accounts.balance(db, tenant)
    assert bal.balance == 0 and bal.reserved == 0  # charged the hold, never below zero
    async with db.session() as s:
        completion = await s.scalar(
            select(LedgerEntry.completion_tokens).where(LedgerEntry.entry_key == h.request_id)
        )
    assert completion == 10


async def test_free_quotas_are_spent_soonest_expiring_first_on_every_database(
    db: Database, funded_tenant: TenantFactory
) -> None:
    tenant, project = await funded_tenant(D("1"))
    model = f"m-{secrets.token_hex(3)}"
    forever = await accounts.grant_quota(db, tenant, model, 100, None)
    soon = await accounts.grant_quota(db, tenant, model, 100, datetime.now(UTC) + timedelta(days=3))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        h = hold(tenant, project, output=10, model=model)
        await journal.reserve(h)
        journal.settle(Settlement(h, 0, 0, 10, 0, "served"))
        await journal.drain()
    finally:
        await journal.stop()
    assert h.quota_id == soon.id and h.quota_id != forever.id


async def test_settled_reservations_are_purged(db: Database, funded_tenant: TenantFactory) -> None:
    tenant, project = await funded_tenant(D("1"))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        done, running = hold(tenant, project), hold(tenant, project)
        await journal.reserve(done)
        await journal.reserve(running)
        journal.settle(Settlement(done, 0, 0, 3, 0, "served"))
        await journal.drain()
        await journal.purge(older_than=timedelta(0))
        states = await _reservations(db, tenant)
        journal.settle(Settlement(running, 0, 0, 3, 0, "served"))
    finally:
        await journal.stop()
    assert states == {running.request_id: "open"}  # the ledger keeps the settled one
    async with db.session() as s:
        entries = await s.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.tenant_id == tenant)
        )
    assert entries == 3  # the top-up and both requests


async def test_after_an_idle_spell_a_reservation_lands_with_a_fresh_heartbeat(
    db: Database, funded_tenant: TenantFactory
) -> None:
    """An idle gateway stops renewing its lease (it writes nothing); the reservation that
    ends the spell must carry the heartbeat in its own commit, or another gateway could take
    the gateway for dead and reconcile the fresh reservation under it."""
    tenant, project = await funded_tenant(D("1"))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        stale = datetime(2000, 1, 1, tzinfo=UTC)
        async with db.session() as s, s.begin():
            lease = await s.get(GatewayLease, journal.owner)
            assert lease is not None
            lease.heartbeat_at = stale  # as if the gateway had idled for ages
        journal._renewed = float("-inf")
        assert not journal._holding()  # nothing open: the housekeeping would not renew
        await journal.reserve(hold(tenant, project))
        async with db.session() as s:
            lease = await s.get(GatewayLease, journal.owner)
        assert lease is not None and lease.heartbeat_at.replace(tzinfo=UTC) > stale
    finally:
        await journal.stop()


async def test_the_power_loss_sync_runs(db: Database, funded_tenant: TenantFactory) -> None:
    """``Database.sync`` (the WAL checkpoint the journal runs each second on SQLite) failed
    every time with "database table is locked", and took the rest of the housekeeping beat
    (lease renewal, reconciliation, purge) down with it."""
    tenant, project = await funded_tenant(D("1"))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        await journal.reserve(hold(tenant, project))
        await db.sync()
    finally:
        await journal.stop()


async def test_a_reservation_whose_commit_landed_but_whose_answer_was_lost_is_released(
    db: Database, funded_tenant: TenantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database dies between COMMIT and its answer (seen in the PostgreSQL outage test):
    the client got its 503, so the reservation, written after all, must not hold credit."""
    tenant, project = await funded_tenant(D("1"))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    real, lost = db.transaction, [False]

    async def landed_then_lost(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        if not lost[0]:
            lost[0] = True
            raise ConnectionResetError("connection lost after COMMIT")
        return result

    monkeypatch.setattr(db, "transaction", landed_then_lost)
    h = hold(tenant, project, prompt=8, output=50)
    with pytest.raises(ServiceUnavailableError):
        await journal.reserve(h)
    async with asyncio.timeout(STUCK_S):
        await journal.drain()
    await journal.stop()
    assert await _reservations(db, tenant) == {h.request_id: "released"}
    assert await ledger_sum(db, tenant) == 0
