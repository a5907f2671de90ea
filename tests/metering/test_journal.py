"""Reservations, settlements, quotas, budgets and reconciliation against a real database."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from lingyun.errors import InsufficientQuotaError
from lingyun.metering import accounts
from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.journal import Journal
from lingyun.metering.pricing import UnitPrices
from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry, Reservation
from tests.metering.conftest import TenantFactory

pytestmark = pytest.mark.anyio
D = Decimal
# 1 per 1M input tokens, 1000 per 1M output tokens: a completion token costs 0.001.
PRICES = UnitPrices("CNY", D(1), D(1), D(1000), D(1000))


def hold(tenant: str, project: str, *, prompt: int = 0, output: int = 10, model: str = "m") -> Hold:
    return Hold(
        request_id=f"req_{secrets.token_hex(8)}", tenant_id=tenant, project_id=project,
        key_id="key_x", model=model, period="2026-11", prices=PRICES,
        prompt_upper=prompt, output_upper=output, prompt_estimate=prompt,
    )  # fmt: skip


async def ledger_sum(db: Database, tenant: str, kind: str = "usage") -> Decimal:
    async with db.session() as s:
        total = await s.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.tenant_id == tenant, LedgerEntry.kind == kind
            )
        )
    return D(total or 0)


async def checkpointed_output(db: Database, request_id: str) -> int | None:
    async with db.session() as s:
        return await s.scalar(
            select(Reservation.completion_tokens).where(Reservation.request_id == request_id)
        )


async def test_reserve_worst_case_settle_actual(db: Database, funded_tenant: TenantFactory) -> None:
    tenant, project = await funded_tenant(D("0.025"))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        h1, h2, h3 = (hold(tenant, project, output=10) for _ in range(3))
        await journal.reserve(h1)  # reserves 0.010
        await journal.reserve(h2)  # reserves 0.010, 0.005 left
        with pytest.raises(InsufficientQuotaError, match="prepaid balance"):
            await journal.reserve(h3)
        journal.settle(Settlement(h1, 0, 0, 4, 0, "served"))  # charges 0.004, frees 0.006
        await journal.drain()
        await journal.reserve(h3)
        journal.settle(Settlement(h2, 0, 0, 10, 0, "served"))
        journal.settle(Settlement(h3, 0, 0, 0, 0, "failed", reached_engine=False))
        await journal.drain()
    finally:
        await journal.stop()
    bal = await accounts.balance(db, tenant)
    assert bal.balance == D("0.011") and bal.reserved == 0
    assert bal.ledger_sum == bal.balance  # the balance is a projection of the ledger
    assert await ledger_sum(db, tenant) == D("-0.014")
    async with db.session() as s:
        states = dict((await s.execute(select(Reservation.request_id, Reservation.state).where(
            Reservation.tenant_id == tenant))).all())  # fmt: skip
    assert states == {h1.request_id: "settled", h2.request_id: "settled", h3.request_id: "released"}


async def test_a_settlement_counts_once(db: Database, funded_tenant: TenantFactory) -> None:
    tenant, project = await funded_tenant(D("1"))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        h = hold(tenant, project)
        await journal.reserve(h)
        for _ in range(3):
            journal.settle(Settlement(h, 0, 0, 5, 0, "served"))
        await journal.drain()
    finally:
        await journal.stop()
    assert await ledger_sum(db, tenant) == D("-0.005")
    assert (await accounts.balance(db, tenant)).balance == D("0.995")


async def test_concurrent_reserves_never_overspend(
    db: Database, funded_tenant: TenantFactory
) -> None:
    tenant, project = await funded_tenant(D("0.1"))  # covers exactly 10 holds of 0.01
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        holds = [hold(tenant, project, output=10) for _ in range(50)]
        results = await asyncio.gather(*(journal.reserve(h) for h in holds), return_exceptions=True)
    finally:
        await journal.stop()
    admitted = [r for r in results if r is None]
    assert len(admitted) == 10
    assert all(isinstance(r, InsufficientQuotaError) for r in results if r is not None)


async def test_free_quota_first_then_balance_and_free_only(
    db: Database, funded_tenant: TenantFactory
) -> None:
    tenant, project = await funded_tenant(D("1"))
    await accounts.grant_quota(db, tenant, "m", 15, None)
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        h1 = hold(tenant, project, prompt=2, output=10)
        await journal.reserve(h1)
        assert h1.free_tokens == 12
        journal.settle(Settlement(h1, 2, 0, 10, 0, "served"))  # all free
        h2 = hold(tenant, project, prompt=2, output=10)
        await journal.drain()
        await journal.reserve(h2)  # 3 free tokens left: 2 prompt + 1 completion free
        journal.settle(Settlement(h2, 2, 0, 10, 0, "served"))
        await journal.drain()
        await accounts.set_free_only(db, tenant, True)
        with pytest.raises(InsufficientQuotaError, match="free quota"):
            await journal.reserve(hold(tenant, project, prompt=2, output=10))
    finally:
        await journal.stop()
    assert await ledger_sum(db, tenant) == D("-0.009")  # 9 paid completion tokens
    quotas = await accounts.list_quotas(db, tenant)
    assert (quotas[0].used_tokens, quotas[0].reserved_tokens) == (15, 0)


async def test_monthly_project_budget(db: Database, funded_tenant: TenantFactory) -> None:
    tenant, project = await funded_tenant(D("100"))
    await accounts.set_budget(db, "project", project, D("0.015"))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    await journal.start()
    try:
        h = hold(tenant, project, output=10)
        await journal.reserve(h)
        with pytest.raises(InsufficientQuotaError, match="project's monthly budget"):
            await journal.reserve(hold(tenant, project, output=10))
        journal.settle(Settlement(h, 0, 0, 10, 0, "served"))
        await journal.drain()
        await journal.reserve(hold(tenant, project, output=5))
        with pytest.raises(InsufficientQuotaError):
            await journal.reserve(hold(tenant, project, output=1))
    finally:
        await journal.stop()


async def test_reconcile_charges_checkpointed_usage_once(
    db: Database, funded_tenant: TenantFactory
) -> None:
    tenant, project = await funded_tenant(D("1"))
    owner = f"gw-{secrets.token_hex(3)}"
    crashed = Journal(db, owner=owner, checkpoint_s=0.05)
    await crashed.start()
    h = hold(tenant, project, prompt=8, output=50)
    await crashed.reserve(h)
    crashed.track(h.request_id, lambda: (8, 7))
    async with asyncio.timeout(30):  # a checkpoint has the delivered counts in the database
        while await checkpointed_output(db, h.request_id) != 7:  # noqa: ASYNC110 (the db)
            await asyncio.sleep(0.02)
    for task in crashed._tasks:  # the process "dies": nothing is settled or drained
        task.cancel()
    restarted = Journal(db, owner=owner)
    await restarted.start()  # start-up reconciles this owner's orphans
    await restarted.stop()
    assert await ledger_sum(db, tenant) == -(PRICES.cost(8, 0, 7))
    again = Journal(db, owner=owner)
    await again.start()
    await again.stop()
    assert await ledger_sum(db, tenant) == -(PRICES.cost(8, 0, 7))
    bal = await accounts.balance(db, tenant)
    assert bal.reserved == 0 and bal.balance == bal.ledger_sum


async def test_topups_are_idempotent(db: Database, funded_tenant: TenantFactory) -> None:
    tenant, _ = await funded_tenant(D(0))
    _, created = await accounts.credit(db, tenant, D("5"), idempotency_key="inv-1")
    _, again = await accounts.credit(db, tenant, D("5"), idempotency_key="inv-1")
    assert (created, again) == (True, False)
    assert (await accounts.balance(db, tenant)).balance == D("5")
