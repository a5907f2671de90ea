"""One group commit: settle what finished, then decide what asks to start — one transaction.

Settling first frees reserved money for the reservations in the same batch. Decisions are
made on rows read under lock (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions
begin IMMEDIATE), so several gateways sharing one database never overspend a balance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from lingyun.errors import InsufficientQuotaError
from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.money import ZERO
from lingyun.store.ledger import Account, Budget, BudgetPeriod, FreeQuota, LedgerEntry, Reservation
from lingyun.store.models import utcnow


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def ensure_accounts(session: AsyncSession, tenant_ids: Iterable[str]) -> dict[str, Account]:
    ids = sorted(set(tenant_ids))
    if not ids:
        return {}
    await session.execute(
        _insert(session, Account).on_conflict_do_nothing(index_elements=["tenant_id"]),
        [{"tenant_id": t, "balance": ZERO, "reserved": ZERO} for t in ids],
    )
    rows = await session.scalars(
        select(Account).where(Account.tenant_id.in_(ids)).with_for_update()
    )
    return {a.tenant_id: a for a in rows}


async def _periods(
    session: AsyncSession, scopes: set[tuple[str, str]], period: str
) -> dict[tuple[str, str], tuple[Budget, BudgetPeriod]]:
    """Budgets that apply to these (scope, id) pairs, with this period's row, locked."""
    if not scopes:
        return {}
    conds = [(Budget.scope == sc) & (Budget.scope_id == sid) for sc, sid in scopes]
    budgets = list((await session.scalars(select(Budget).where(or_(*conds)))).all())
    if not budgets:
        return {}
    await session.execute(
        _insert(session, BudgetPeriod).on_conflict_do_nothing(
            index_elements=["scope", "scope_id", "period"]
        ),
        [{"scope": b.scope, "scope_id": b.scope_id, "period": period} for b in budgets],
    )
    rows = await session.scalars(
        select(BudgetPeriod)
        .where(
            or_(
                *[
                    (BudgetPeriod.scope == b.scope) & (BudgetPeriod.scope_id == b.scope_id)
                    for b in budgets
                ]
            ),
            BudgetPeriod.period == period,
        )
        .with_for_update()
    )
    by_key = {(p.scope, p.scope_id): p for p in rows}
    return {(b.scope, b.scope_id): (b, by_key[(b.scope, b.scope_id)]) for b in budgets}


async def apply_reserves(
    session: AsyncSession, holds: Sequence[Hold], owner: str
) -> list[Exception | None]:
    """Admit or refuse each hold in order; admitted ones become durable reservations."""
    accounts = await ensure_accounts(session, (h.tenant_id for h in holds))
    outcomes: list[Exception | None] = []
    by_period: dict[str, list[Hold]] = defaultdict(list)
    for h in holds:
        by_period[h.period].append(h)
    budget_rows: dict[tuple[str, str], tuple[Budget, BudgetPeriod]] = {}
    for period, group in by_period.items():
        scopes = {("tenant", h.tenant_id) for h in group} | {
            ("project", h.project_id) for h in group
        }
        budget_rows.update(await _periods(session, scopes, period))
    now = utcnow()
    quotas = list(
        (
            await session.scalars(
                select(FreeQuota)
                .where(
                    FreeQuota.tenant_id.in_({h.tenant_id for h in holds}),
                    or_(FreeQuota.expires_at.is_(None), FreeQuota.expires_at > now),
                )
                .order_by(FreeQuota.expires_at)
                .with_for_update()
            )
        ).all()
    )
    for hold in holds:
        outcomes.append(_decide(hold, accounts[hold.tenant_id], budget_rows, quotas))
    admitted = [h for h, o in zip(holds, outcomes, strict=True) if o is None]
    if admitted:
        session.add_all(
            Reservation(
                request_id=h.request_id,
                tenant_id=h.tenant_id,
                project_id=h.project_id,
                key_id=h.key_id,
                model=h.model,
                period=h.period,
                amount=h.amount,
                free_tokens=h.free_tokens,
                quota_id=h.quota_id,
                prices=h.prices.to_json(),
                prompt_tokens=h.prompt_estimate,
                completion_tokens=0,
                owner=owner,
                state="open",
            )
            for h in admitted
        )
    return outcomes


def _decide(
    hold: Hold,
    account: Account,
    budgets: dict[tuple[str, str], tuple[Budget, BudgetPeriod]],
    quotas: list[FreeQuota],
) -> Exception | None:
    worst = hold.prompt_upper + hold.output_upper
    quota = next(
        (q for q in quotas if q.tenant_id == hold.tenant_id and q.model == hold.model
         and q.granted_tokens - q.used_tokens - q.reserved_tokens > 0),
        None,
    )  # fmt: skip
    free = 0
    if quota is not None:
        free = min(worst, quota.granted_tokens - quota.used_tokens - quota.reserved_tokens)
    free_prompt = min(free, hold.prompt_upper)
    amount = hold.prices.cost(
        hold.prompt_upper - free_prompt, 0, hold.output_upper - (free - free_prompt)
    )
    if amount > 0 and account.free_only:
        return InsufficientQuotaError(
            "Your free quota for this model is used up and this tenant is limited to free "
            "quota. Ask an administrator to top up or lift the free-only setting."
        )
    if amount > 0 and account.balance - account.reserved < amount:
        return InsufficientQuotaError(
            "You exceeded your current quota: the tenant's prepaid balance "
            f"({account.balance - account.reserved:.6f} {hold.prices.currency} available) does "
            "not cover this request's maximum cost. Top up, or lower max_tokens."
        )
    applying = [
        budgets[k]
        for k in (("tenant", hold.tenant_id), ("project", hold.project_id))
        if k in budgets
    ]
    for budget, spent in applying:
        if amount > 0 and spent.spent + spent.reserved + amount > budget.monthly_limit:
            return InsufficientQuotaError(
                f"You exceeded your current quota: the {budget.scope}'s monthly budget of "
                f"{budget.monthly_limit} for {spent.period} is used up."
            )
    hold.amount, hold.free_tokens = amount, free
    hold.quota_id = quota.id if quota is not None and free else None
    account.reserved += amount
    for _, spent in applying:
        spent.reserved += amount
    if quota is not None and free:
        quota.reserved_tokens += free
    return None


async def apply_settles(session: AsyncSession, settlements: Sequence[Settlement]) -> int:
    """Settle (or release) each open reservation once; returns how many it settled."""
    ids = [s.hold.request_id for s in settlements]
    opened = set(
        (
            await session.scalars(
                update(Reservation)
                .where(Reservation.request_id.in_(ids), Reservation.state == "open")
                .values(state="settling")
                .returning(Reservation.request_id)
            )
        ).all()
    )
    todo: list[Settlement] = []
    for s in settlements:  # the first settlement of a request wins, even within one batch
        if s.hold.request_id in opened:
            opened.discard(s.hold.request_id)
            todo.append(s)
    if not todo:
        return 0
    accounts = await ensure_accounts(session, (s.hold.tenant_id for s in todo))
    rows: list[dict[str, Any]] = []
    quota_use: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    budget_moves: dict[tuple[str, str, str], tuple[Decimal, Decimal]] = defaultdict(
        lambda: (ZERO, ZERO)
    )
    for s in todo:
        h = s.hold
        charge = s.charge() if s.reached_engine else ZERO
        free, _, _ = s.split_free() if s.reached_engine else (0, 0, 0)
        account = accounts[h.tenant_id]
        account.reserved -= h.amount
        account.balance -= charge
        account.updated_at = utcnow()
        for scope, sid in (("tenant", h.tenant_id), ("project", h.project_id)):
            c, r = budget_moves[(scope, sid, h.period)]
            budget_moves[(scope, sid, h.period)] = (c + charge, r + h.amount)
        if h.quota_id is not None:
            used, reserved = quota_use[h.quota_id]
            quota_use[h.quota_id] = (used + free, reserved + h.free_tokens)
        if s.reached_engine:
            rows.append(_ledger_row(s, charge, free))
    if rows:
        await session.execute(
            _insert(session, LedgerEntry).on_conflict_do_nothing(index_elements=["entry_key"]),
            rows,
        )
    for (scope, sid, period), (charged, unheld) in budget_moves.items():
        await session.execute(
            update(BudgetPeriod)
            .where(
                BudgetPeriod.scope == scope,
                BudgetPeriod.scope_id == sid,
                BudgetPeriod.period == period,
            )
            .values(spent=BudgetPeriod.spent + charged, reserved=BudgetPeriod.reserved - unheld)
        )
    for quota_id, (used, unreserved) in quota_use.items():
        await session.execute(
            update(FreeQuota)
            .where(FreeQuota.id == quota_id)
            .values(
                used_tokens=FreeQuota.used_tokens + used,
                reserved_tokens=FreeQuota.reserved_tokens - unreserved,
            )
        )
    settled = [s.hold.request_id for s in todo if s.reached_engine]
    released = [s.hold.request_id for s in todo if not s.reached_engine]
    for state, req_ids in (("settled", settled), ("released", released)):
        if req_ids:
            await session.execute(
                update(Reservation).where(Reservation.request_id.in_(req_ids)).values(state=state)
            )
    return len(settled)


def _ledger_row(s: Settlement, charge: Decimal, free: int) -> dict[str, Any]:
    h, p = s.hold, s.hold.prices
    return {
        "entry_key": h.request_id, "kind": "usage", "created_at": utcnow(),
        "tenant_id": h.tenant_id, "project_id": h.project_id, "key_id": h.key_id,
        "model": h.model, "prompt_tokens": s.prompt_tokens, "cached_tokens": s.cached_tokens,
        "completion_tokens": s.completion_tokens, "free_tokens": free, "currency": p.currency,
        "input_per_m": p.input, "cached_input_per_m": p.cached_input, "output_per_m": p.output,
        "amount": -charge, "note": s.note,
    }  # fmt: skip
