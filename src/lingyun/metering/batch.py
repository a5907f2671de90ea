"""One group commit: settle what finished, then decide what asks to start — one transaction.

Settling first frees reserved money for the reservations in the same batch. Decisions are
made on rows read under lock (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions
begin IMMEDIATE), so several gateways sharing one database never overspend a balance.

A batch costs a fixed handful of statements however many requests it carries: rows go in
with one executemany each, and budgets and free quotas are only read for the tenants and
projects that have any (``BillingScopes``, refreshed every second).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from lingyun.metering import refusals
from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.money import ZERO
from lingyun.store.ledger import Account, Budget, BudgetPeriod, FreeQuota, LedgerEntry, Reservation
from lingyun.store.models import utcnow

# Core statements (on the tables, not the ORM classes): executemany, no identity-map work.
_ACCOUNTS_TABLE = cast(Table, Account.__table__)
_ACCOUNTS = _ACCOUNTS_TABLE.c
ACCOUNT_DELTA = (
    update(_ACCOUNTS_TABLE)
    .where(_ACCOUNTS.tenant_id == bindparam("t"))
    .values(
        balance=_ACCOUNTS.balance - bindparam("charge"),
        reserved=_ACCOUNTS.reserved + bindparam("held"),
        updated_at=bindparam("now"),
    )
)


@dataclass
class BillingScopes:
    """Which tenants have account rows, which tenants/projects have budgets, and which
    (tenant, model) pairs have free quota left (a lease cannot hold free tokens)."""

    accounts: set[str] = field(default_factory=set)
    budgets: set[tuple[str, str]] = field(default_factory=set)
    quota_tenants: set[str] = field(default_factory=set)
    quota_models: set[tuple[str, str]] = field(default_factory=set)
    # When the soonest live quota expires: the scopes change then with no write to tell.
    next_expiry: datetime | None = None

    def load(self, session: Session) -> None:
        self.budgets = {(s, i) for s, i in (session.execute(select(Budget.scope, Budget.scope_id)))}
        rows = session.execute(
            select(FreeQuota.tenant_id, FreeQuota.model)
            .where(
                or_(FreeQuota.expires_at.is_(None), FreeQuota.expires_at > utcnow()),
                FreeQuota.granted_tokens > FreeQuota.used_tokens + FreeQuota.reserved_tokens,
            )
            .distinct()
        )
        self.quota_models = {(t, m) for t, m in rows}
        self.quota_tenants = {t for t, _ in self.quota_models}
        self.next_expiry = session.scalar(
            select(func.min(FreeQuota.expires_at)).where(FreeQuota.expires_at > utcnow())
        )


def insert_for(session: Session, table: Any) -> Any:
    """This session's dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def ensure_accounts(session: Session, tenant_ids: Iterable[str]) -> dict[str, Account]:
    """Account rows for these tenants, created if missing, locked for this transaction."""
    ids = sorted(set(tenant_ids))
    if not ids:
        return {}
    session.execute(
        insert_for(session, Account).on_conflict_do_nothing(index_elements=["tenant_id"]),
        [{"tenant_id": t, "balance": ZERO, "reserved": ZERO} for t in ids],
    )
    rows = session.scalars(
        select(Account)
        .where(Account.tenant_id.in_(ids))
        .order_by(Account.tenant_id)
        .with_for_update()
    )
    return {a.tenant_id: a for a in rows}


@dataclass
class _Funds:
    balance: Decimal
    reserved: Decimal
    free_only: bool
    held: Decimal = ZERO  # reserved by this batch


def locked_funds(session: Session, tenants: set[str], scopes: BillingScopes) -> dict[str, _Funds]:
    missing = tenants - scopes.accounts
    if missing:
        session.connection().execute(
            insert_for(session, Account).on_conflict_do_nothing(index_elements=["tenant_id"]),
            [{"tenant_id": t, "balance": ZERO, "reserved": ZERO} for t in sorted(missing)],
        )
        scopes.accounts |= missing
    rows = session.connection().execute(
        select(Account.tenant_id, Account.balance, Account.reserved, Account.free_only)
        .where(Account.tenant_id.in_(sorted(tenants)))
        .order_by(Account.tenant_id)  # one lock order for every gateway: no deadlocks
        .with_for_update()
    )
    return {t: _Funds(b, r, f) for t, b, r, f in rows}


def locked_periods(
    session: Session, scopes: set[tuple[str, str]], period: str
) -> dict[tuple[str, str], tuple[Decimal, BudgetPeriod]]:
    """(limit, this period's row, locked) for each of these scopes that has a budget."""
    if not scopes:
        return {}
    conds = [(Budget.scope == sc) & (Budget.scope_id == sid) for sc, sid in scopes]
    found = session.execute(
        select(Budget.scope, Budget.scope_id, Budget.monthly_limit).where(or_(*conds))
    )
    limits = {(s, i): lim for s, i, lim in found}
    if not limits:
        return {}
    session.execute(
        insert_for(session, BudgetPeriod).on_conflict_do_nothing(
            index_elements=["scope", "scope_id", "period"]
        ),
        [{"scope": s, "scope_id": i, "period": period} for s, i in limits],
    )
    rows = session.scalars(
        select(BudgetPeriod)
        .where(
            or_(*[(BudgetPeriod.scope == s) & (BudgetPeriod.scope_id == i) for s, i in limits]),
            BudgetPeriod.period == period,
        )
        .with_for_update()
    )
    return {(p.scope, p.scope_id): (limits[(p.scope, p.scope_id)], p) for p in rows}


def apply_reserves(
    session: Session,
    holds: Sequence[Hold],
    owner: str,
    scopes: BillingScopes | None = None,
    available: dict[str, Decimal] | None = None,
) -> list[Exception | None]:
    """Admit or refuse each hold in order; admitted ones become durable reservations.
    ``available`` gets each account's money left after these decisions (none if free-only)."""
    if scopes is None:
        scopes = BillingScopes()
        scopes.load(session)
    funds = locked_funds(session, {h.tenant_id for h in holds}, scopes)
    budgets: dict[tuple[str, str], tuple[Decimal, BudgetPeriod]] = {}
    for period in {h.period for h in holds}:
        wanted = {("tenant", h.tenant_id) for h in holds if h.period == period}
        wanted |= {("project", h.project_id) for h in holds if h.period == period}
        budgets.update(locked_periods(session, wanted & scopes.budgets, period))
    quota_tenants = {h.tenant_id for h in holds} & scopes.quota_tenants
    quotas: list[FreeQuota] = []
    if quota_tenants:
        quotas = list(
            session.scalars(
                select(FreeQuota)
                .where(
                    FreeQuota.tenant_id.in_(sorted(quota_tenants)),
                    or_(FreeQuota.expires_at.is_(None), FreeQuota.expires_at > utcnow()),
                )
                # soonest expiring first, never-expiring last, on SQLite and PostgreSQL alike
                # (they sort NULL at opposite ends)
                .order_by(FreeQuota.expires_at.is_(None), FreeQuota.expires_at, FreeQuota.id)
                .with_for_update()
            )
        )
    outcomes = [_decide(h, funds[h.tenant_id], budgets, quotas) for h in holds]
    if available is not None:
        for t, f in funds.items():
            available[t] = ZERO if f.free_only else f.balance - f.reserved - f.held
    admitted = [h for h, o in zip(holds, outcomes, strict=True) if o is None]
    if admitted:
        session.connection().execute(
            insert_for(session, Reservation),
            [
                {
                    "request_id": h.request_id,
                    "created_at": utcnow(),
                    "tenant_id": h.tenant_id,
                    "project_id": h.project_id,
                    "key_id": h.key_id,
                    "model": h.model,
                    "period": h.period,
                    "amount": h.amount,
                    "free_tokens": h.free_tokens,
                    "quota_id": h.quota_id,
                    "prices": {**h.prices.to_json(), "budgets": h.budgets, "lane": h.lane},
                    # what reached the client so far: nothing yet (checkpoints raise it)
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "owner": owner,
                    "state": "open",
                }
                for h in admitted
            ],
        )
        now = utcnow()
        held = [
            {"t": t, "charge": ZERO, "held": f.held, "now": now} for t, f in funds.items() if f.held
        ]
        if held:
            session.connection().execute(ACCOUNT_DELTA, held)
    return outcomes


def _decide(
    hold: Hold,
    funds: _Funds,
    budgets: dict[tuple[str, str], tuple[Decimal, BudgetPeriod]],
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
    if amount > 0 and funds.free_only:
        return refusals.free_only()
    available = funds.balance - funds.reserved - funds.held
    if amount > 0 and available < amount:
        return refusals.balance(available, hold.prices.currency)
    applying = [
        budgets[k]
        for k in (("tenant", hold.tenant_id), ("project", hold.project_id))
        if k in budgets
    ]
    for limit, spent in applying:
        if amount > 0 and spent.spent + spent.reserved + amount > limit:
            return refusals.budget(spent.scope, limit, spent.period)
    hold.amount, hold.free_tokens = amount, free
    hold.quota_id = quota.id if quota is not None and free else None
    hold.budgets = [(spent.scope, spent.scope_id) for _, spent in applying]
    funds.held += amount
    for _, spent in applying:
        spent.reserved += amount  # an ORM row: flushed with the transaction
    if quota is not None and free:
        quota.reserved_tokens += free
    return None


def apply_settles(session: Session, settlements: Sequence[Settlement]) -> int:
    """Settle (or release) each open reservation once; returns how many it settled."""
    todo: dict[str, Settlement] = {}
    for s in settlements:  # the first settlement of a request wins, even within one batch
        todo.setdefault(s.hold.request_id, s.capped())
    done: list[Settlement] = []
    for state, reached in (("settled", True), ("released", False)):
        ids = [rid for rid, s in todo.items() if s.reached_engine is reached]
        if ids:
            won = set(
                session.connection().scalars(
                    update(Reservation)
                    .where(Reservation.request_id.in_(ids), Reservation.state == "open")
                    .values(state=state)
                    .returning(Reservation.request_id)
                )
            )
            done += [todo[rid] for rid in ids if rid in won]
    if not done:
        return 0
    now = utcnow()
    rows: list[dict[str, Any]] = []
    per_tenant: dict[str, tuple[Decimal, Decimal]] = defaultdict(lambda: (ZERO, ZERO))
    per_budget: dict[tuple[str, str, str], tuple[Decimal, Decimal]] = defaultdict(
        lambda: (ZERO, ZERO)
    )
    per_quota: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for s in done:
        h = s.hold
        charge = s.charge() if s.reached_engine else ZERO
        free = s.split_free()[0] if s.reached_engine else 0
        c, r = per_tenant[h.tenant_id]
        per_tenant[h.tenant_id] = (c + charge, r + h.amount)
        for scope, scope_id in h.budgets:
            key = (scope, scope_id, h.period)
            bc, br = per_budget[key]
            per_budget[key] = (bc + charge, br + h.amount)
        if h.quota_id is not None:
            used, held = per_quota[h.quota_id]
            per_quota[h.quota_id] = (used + free, held + h.free_tokens)
        if s.reached_engine:
            rows.append(ledger_row(s, charge, free, now))
    if rows:
        session.connection().execute(
            insert_for(session, LedgerEntry).on_conflict_do_nothing(index_elements=["entry_key"]),
            rows,
        )
    session.connection().execute(
        ACCOUNT_DELTA,
        [
            {"t": t, "charge": c, "held": -r, "now": now}
            for t, (c, r) in sorted(per_tenant.items())  # the lock order of locked_funds
        ],
    )
    settle_budgets(session, per_budget)
    for quota_id, (used, unheld) in sorted(per_quota.items()):
        session.execute(
            update(FreeQuota)
            .where(FreeQuota.id == quota_id)
            .values(
                used_tokens=FreeQuota.used_tokens + used,
                reserved_tokens=FreeQuota.reserved_tokens - unheld,
            )
        )
    return sum(1 for s in done if s.reached_engine)


def settle_budgets(
    session: Session, moves: dict[tuple[str, str, str], tuple[Decimal, Decimal]]
) -> None:
    """Move charges from reserved to spent in the periods the holds reserved against."""
    table = cast(Table, BudgetPeriod.__table__)
    c = table.c
    stmt = (
        update(table)
        .where(c.scope == bindparam("s"), c.scope_id == bindparam("i"), c.period == bindparam("p"))
        .values(spent=c.spent + bindparam("charge"), reserved=c.reserved - bindparam("unheld"))
    )
    params = [
        {"s": s, "i": i, "p": p, "charge": c, "unheld": r}
        for (s, i, p), (c, r) in sorted(moves.items())
    ]
    if params:
        session.connection().execute(stmt, params)


def ledger_row(s: Settlement, charge: Decimal, free: int, now: datetime) -> dict[str, Any]:
    h, p = s.hold, s.hold.prices
    return {
        "entry_key": h.request_id, "kind": "usage", "created_at": now,
        "tenant_id": h.tenant_id, "project_id": h.project_id, "key_id": h.key_id,
        "model": h.model, "prompt_tokens": s.prompt_tokens, "cached_tokens": s.cached_tokens,
        "completion_tokens": s.completion_tokens, "free_tokens": free, "currency": p.currency,
        "input_per_m": p.input, "cached_input_per_m": p.cached_input, "output_per_m": p.output,
        "amount": -charge, "note": s.note if h.lane == "interactive" else f"{h.lane} {s.note}",
    }  # fmt: skip
