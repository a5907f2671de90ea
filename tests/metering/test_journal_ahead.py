"""Reservations written while the engine works (``Journal.reserve_ahead``, ``Headroom``).

A request may start before its reservation is committed only when the journal's last view of
the account covers it; the database still decides, the first byte waits for the decision,
and whatever the order of events each request is settled once or not at all.
"""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from sqlalchemy import func, select

from lingyun.errors import InsufficientQuotaError
from lingyun.metering import accounts
from lingyun.metering.holds import Settlement
from lingyun.metering.journal import Journal
from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry, Reservation
from lingyun.tenancy.service import TenancyService
from tests.metering.conftest import TenantFactory
from tests.metering.test_journal import hold, ledger_sum
from tests.support.server import LingyunServer

D = Decimal


def _journal(db: Database) -> Journal:
    return Journal(db, owner=f"gw-{secrets.token_hex(3)}")


async def _states(db: Database, tenant: str) -> dict[str, str]:
    async with db.session() as s:
        rows = await s.execute(
            select(Reservation.request_id, Reservation.state).where(Reservation.tenant_id == tenant)
        )
        return {rid: state for rid, state in rows.all()}


@pytest.mark.anyio
async def test_known_headroom_lets_a_request_start_before_its_reservation(
    db: Database, funded_tenant: TenantFactory
) -> None:
    tenant, project = await funded_tenant(D("1"))
    journal = _journal(db)
    await journal.start()
    try:
        first, second, big = hold(tenant, project), hold(tenant, project), hold(tenant, project)
        assert journal.reserve_ahead(first) is None  # never seen this account: wait
        await journal.reserve(first)
        pending = journal.reserve_ahead(second)  # 0.01 of ~0.99 known: goes ahead
        assert pending is not None and not pending.done()
        await pending
        big.output_upper = 600  # 0.6: more than the share lent ahead
        assert journal.reserve_ahead(big) is None
        for h in (first, second):
            journal.settle(Settlement(h, 0, 0, 5, 0, "served"))
        await journal.drain()
    finally:
        await journal.stop()
    assert await _states(db, tenant) == {
        first.request_id: "settled",
        second.request_id: "settled",
    }
    assert await ledger_sum(db, tenant) == D("-0.010")


@pytest.mark.anyio
async def test_a_settlement_before_its_decision_waits_for_it(
    db: Database, funded_tenant: TenantFactory
) -> None:
    """A request let through ahead may end (an engine error, a client gone) before its
    reservation is written: its settlement must land after the reservation, not vanish."""
    tenant, project = await funded_tenant(D("1"))
    journal = _journal(db)
    await journal.start()
    try:
        await journal.reserve(hold(tenant, project))  # left held: 0.010
        h = hold(tenant, project)
        pending = journal.reserve_ahead(h)
        assert pending is not None and not pending.done()
        journal.settle(Settlement(h, 0, 0, 7, 0, "served"))  # before the decision
        await journal.drain()
        await pending
        await journal.drain()
    finally:
        await journal.stop()
    assert (await _states(db, tenant))[h.request_id] == "settled"
    bal = await accounts.balance(db, tenant)
    assert bal.reserved == D("0.010")  # only the first hold, never settled here, is held
    assert await ledger_sum(db, tenant) == D("-0.007")


@pytest.mark.anyio
async def test_a_refusal_ahead_is_raised_at_the_gate_and_charges_nothing(
    db: Database, funded_tenant: TenantFactory
) -> None:
    """Another gateway spent the money since this one last looked: the database refuses
    the reservation let through ahead, and its settlement (whatever it says) is dropped."""
    tenant, project = await funded_tenant(D("1"))
    mine, other = _journal(db), _journal(db)
    await mine.start()
    await other.start()
    try:
        await mine.reserve(hold(tenant, project))  # mine now believes ~0.99 is available
        await other.reserve(hold(tenant, project, output=985))  # the other takes 0.985
        late = hold(tenant, project)
        pending = mine.reserve_ahead(late)
        assert pending is not None
        with pytest.raises(InsufficientQuotaError, match="prepaid balance"):
            await pending
        mine.settle(Settlement(late, 0, 0, 10, 0, "served"))
        await mine.drain()
    finally:
        await mine.stop()
        await other.stop()
    assert late.request_id not in await _states(db, tenant)
    async with db.session() as s:
        entries = await s.scalar(
            select(func.count()).where(LedgerEntry.entry_key == late.request_id)
        )
    assert entries == 0


@pytest.mark.anyio
async def test_accounts_with_free_quota_or_budgets_always_wait(
    db: Database, funded_tenant: TenantFactory
) -> None:
    with_quota, p1 = await funded_tenant(D("1"))
    with_budget, p2 = await funded_tenant(D("1"))
    await accounts.grant_quota(db, with_quota, "m", 1000, None)
    await accounts.set_budget(db, "project", p2, D("0.5"))
    journal = _journal(db)
    await journal.start()
    try:
        for tenant, project in ((with_quota, p1), (with_budget, p2)):
            await journal.reserve(hold(tenant, project))
            assert journal.reserve_ahead(hold(tenant, project)) is None
    finally:
        await journal.stop()


def test_a_stream_refused_at_the_gate_sends_nothing(
    tmp_path: Path, fresh_database_url: str
) -> None:
    """Through ``lingyun serve``: the server learnt the balance on one request, another
    gateway then spent nearly all of it; the next stream starts ahead, is refused by the
    database, and its client gets the 429 before any chunk, with nothing in the ledger. (A
    database of its own: a list price in the session's shared one would bill every later
    module's requests.)"""
    database_url = fresh_database_url
    server = LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=database_url,
        models=[{"name": "sim", "engine": "simulator"}],
    )
    tenant = f"ahead-{secrets.token_hex(3)}"
    key = server.create_key(tenant)
    server.cli("prices", "set", "sim", "--input", "0", "--output", "1000")
    server.cli("topup", "--tenant", tenant, "--amount", "1")
    server.start()
    try:
        client = openai.OpenAI(api_key=key, base_url=f"{server.base_url}/v1", max_retries=0)
        msg = [{"role": "user", "content": "hi"}]
        client.chat.completions.create(model="sim", messages=msg, max_tokens=5)  # type: ignore[arg-type]

        async def spend_elsewhere() -> None:
            db = Database(database_url)
            other = _journal(db)
            await other.start()
            try:
                t, project = await TenancyService(db).project(tenant, "default")
                await other.reserve(hold(t.id, project.id, output=990, model="sim"))
            finally:
                await other.stop()
                await db.close()

        asyncio.run(spend_elsewhere())
        with pytest.raises(openai.RateLimitError) as refused:
            for _ in client.chat.completions.create(
                model="sim",
                messages=msg,
                max_tokens=10,
                stream=True,  # type: ignore[arg-type]
            ):
                raise AssertionError("a chunk reached the client")
        assert refused.value.code == "insufficient_quota"
    finally:
        server.stop()
    bal = server.cli_json("balance", "--tenant", tenant)
    assert D(bal["balance"]) == D("1") - D("0.005")  # the first request only
