"""Balances, top-ups, budgets and free quotas: what admins change, in one service.

A top-up is a ledger entry and a balance change in one transaction; an idempotency key makes
a retried top-up (a CLI rerun, a webhook delivered twice) count once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lingyun.errors import InvalidRequestError
from lingyun.metering.batch import ensure_accounts
from lingyun.metering.money import ZERO
from lingyun.store.db import Database
from lingyun.store.ledger import Account, Budget, BudgetPeriod, FreeQuota, LedgerEntry
from lingyun.store.models import utcnow

ENTRY_KINDS = ("topup", "refund", "adjustment")


@dataclass(frozen=True)
class BalanceView:
    tenant_id: str
    balance: Decimal
    reserved: Decimal
    ledger_sum: Decimal
    free_only: bool

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved


async def credit(
    db: Database,
    tenant_id: str,
    amount: Decimal,
    *,
    kind: str = "topup",
    note: str = "",
    idempotency_key: str | None = None,
    currency: str = "CNY",
) -> tuple[LedgerEntry, bool]:
    """Add a top-up, refund or adjustment; returns (entry, created). A repeat key is a no-op."""
    if kind not in ENTRY_KINDS:
        raise InvalidRequestError(f"kind must be one of {ENTRY_KINDS}", param="kind")
    if kind != "adjustment" and amount <= 0:
        raise InvalidRequestError("amount must be positive.", param="amount")
    entry_key = f"{kind}:{idempotency_key or secrets.token_hex(12)}"

    def write(s: Session) -> tuple[LedgerEntry, bool]:
        existing = s.scalar(select(LedgerEntry).where(LedgerEntry.entry_key == entry_key))
        if existing is not None:
            return existing, False
        account = ensure_accounts(s, [tenant_id])[tenant_id]
        entry = LedgerEntry(
            entry_key=entry_key, kind=kind, tenant_id=tenant_id, amount=amount,
            currency=currency, note=note, created_at=utcnow(),
        )  # fmt: skip
        s.add(entry)
        account.balance += amount
        account.updated_at = utcnow()
        return entry, True

    return await db.transaction(write)


async def balance(db: Database, tenant_id: str) -> BalanceView:
    async with db.session() as s:
        account = await s.get(Account, tenant_id)
        total = await s.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.tenant_id == tenant_id
            )
        )
    return BalanceView(
        tenant_id,
        account.balance if account else ZERO,
        account.reserved if account else ZERO,
        Decimal(total or 0),
        account.free_only if account else False,
    )


async def set_free_only(db: Database, tenant_id: str, on: bool) -> None:
    def write(s: Session) -> None:
        ensure_accounts(s, [tenant_id])[tenant_id].free_only = on

    await db.transaction(write)


async def set_budget(
    db: Database, scope: str, scope_id: str, monthly_limit: Decimal | None
) -> None:
    """Set (or with ``None`` remove) a monthly budget on a tenant or project."""
    if scope not in ("tenant", "project"):
        raise InvalidRequestError("scope must be tenant or project", param="scope")
    async with db.session() as s, s.begin():
        budget = await s.get(Budget, (scope, scope_id))
        if monthly_limit is None:
            if budget is not None:
                await s.delete(budget)
        elif budget is None:
            s.add(Budget(scope=scope, scope_id=scope_id, monthly_limit=monthly_limit))
        else:
            budget.monthly_limit = monthly_limit


@dataclass(frozen=True)
class BudgetView:
    """A monthly cap and what this month has spent and holds against it."""

    scope: str
    scope_id: str
    monthly_limit: Decimal
    spent: Decimal
    reserved: Decimal


async def budgets(db: Database, subjects: list[tuple[str, str]], period: str) -> list[BudgetView]:
    """The budgets set on these (scope, id) subjects, in their order; ``period`` is YYYY-MM."""
    if not subjects:
        return []
    ids = {sid for _, sid in subjects}
    async with db.session() as s:
        caps = await s.scalars(select(Budget).where(Budget.scope_id.in_(ids)))
        limit = {(b.scope, b.scope_id): b.monthly_limit for b in caps.all()}
        rows = await s.scalars(
            select(BudgetPeriod).where(
                BudgetPeriod.scope_id.in_(ids), BudgetPeriod.period == period
            )
        )
        used = {(p.scope, p.scope_id): (p.spent, p.reserved) for p in rows.all()}
    out = []
    for subject in subjects:
        if subject in limit:
            spent, reserved = used.get(subject, (ZERO, ZERO))
            out.append(BudgetView(subject[0], subject[1], limit[subject], spent, reserved))
    return out


async def grant_quota(
    db: Database, tenant_id: str, model: str, tokens: int, expires_at: datetime | None
) -> FreeQuota:
    if tokens <= 0:
        raise InvalidRequestError("tokens must be positive.", param="tokens")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidRequestError("expires_at is in the past.", param="expires_at")
    async with db.session() as s, s.begin():
        quota = FreeQuota(
            tenant_id=tenant_id, model=model, granted_tokens=tokens, expires_at=expires_at
        )
        s.add(quota)
    return quota


async def list_quotas(db: Database, tenant_id: str) -> list[FreeQuota]:
    async with db.session() as s:
        rows = await s.scalars(
            select(FreeQuota).where(FreeQuota.tenant_id == tenant_id).order_by(FreeQuota.id)
        )
        return list(rows.all())
