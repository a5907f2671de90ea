"""Credit leases in the database: grown under the account's lock, charged, given back.

A lease's amount is reserved on its account (``accounts.reserved``) and on each budget it
counts against (``budget_periods.reserved``), so the database's own check — available money
and budget room, read under lock in one lock order for every gateway — bounds what all
gateways together may spend. Charges folded into the ledger move money from the lease to
``spent``; giving a lease back releases what is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from lingyun.errors import InsufficientQuotaError
from lingyun.metering import refusals
from lingyun.metering.batch import (
    ACCOUNT_DELTA,
    BillingScopes,
    insert_for,
    locked_funds,
    locked_periods,
)
from lingyun.metering.money import STORED, ZERO
from lingyun.store.ledger import Account, BudgetPeriod, CreditLease
from lingyun.store.models import utcnow

# One gateway takes at most this share of what an account (or budget) has left, so the
# account's other gateways still find money; a request's own need is always granted whole.
SHARE = Decimal("0.5")

_LEASES = cast(Table, CreditLease.__table__)
_LEASE_CHARGE = (
    update(_LEASES)
    .where(_LEASES.c.lease_id == bindparam("lid"))
    .values(amount=_LEASES.c.amount - bindparam("charge"), updated_at=bindparam("now"))
)


@dataclass(frozen=True)
class Ask:
    """Grow ``lease_id`` by at least ``need`` (one request's worst case not covered yet) and
    at most ``want``; ``left`` is what the lease has in memory, for the refusal's figure."""

    lease_id: str
    owner: str
    tenant_id: str
    project_id: str
    period: str
    budgets: tuple[tuple[str, str], ...]
    need: Decimal
    want: Decimal
    left: Decimal
    currency: str


def grow(session: Session, ask: Ask, scopes: BillingScopes) -> Decimal | InsufficientQuotaError:
    """Reserve more money for a lease; answers the amount granted, or the refusal."""
    funds = locked_funds(session, {ask.tenant_id}, scopes)[ask.tenant_id]
    if funds.free_only:
        return refusals.free_only()
    available = funds.balance - funds.reserved
    if available < ask.need:
        return refusals.balance(available + ask.left, ask.currency)
    room = available
    periods = locked_periods(session, set(ask.budgets), ask.period)
    for limit, row in periods.values():
        budget_room = limit - row.spent - row.reserved
        if budget_room < ask.need:
            return refusals.budget(row.scope, limit, row.period)
        room = min(room, budget_room)
    share = (room * SHARE).quantize(STORED, rounding=ROUND_DOWN)
    grant = max(ask.need, min(ask.want, share))
    now = utcnow()
    session.connection().execute(
        ACCOUNT_DELTA, [{"t": ask.tenant_id, "charge": ZERO, "held": grant, "now": now}]
    )
    for _, row in periods.values():
        row.reserved += grant  # locked ORM rows: flushed with the transaction
    insert = insert_for(session, CreditLease)
    session.execute(
        insert.values(
            lease_id=ask.lease_id, owner=ask.owner, tenant_id=ask.tenant_id,
            project_id=ask.project_id, period=ask.period, amount=grant,
            budgets=[list(b) for b in ask.budgets], updated_at=now,
        ).on_conflict_do_update(
            index_elements=["lease_id"],
            set_={"amount": CreditLease.amount + grant, "updated_at": now},
        )
    )  # fmt: skip
    return grant


def charge(session: Session, per_lease: dict[str, Decimal]) -> set[str]:
    """Lower each lease by what its folded requests cost; answers the leases not found
    (given back meanwhile: their charges no longer come out of a reservation)."""
    if not per_lease:
        return set()
    found = set(
        session.connection().scalars(
            select(CreditLease.lease_id).where(CreditLease.lease_id.in_(sorted(per_lease)))
        )
    )
    now = utcnow()
    rows = [
        {"lid": lid, "charge": c, "now": now}
        for lid, c in sorted(per_lease.items())
        if lid in found
    ]
    if rows:
        session.connection().execute(_LEASE_CHARGE, rows)
    return set(per_lease) - found


def give_back(session: Session, lease_ids: Iterable[str]) -> int:
    """Release what is left of these leases and delete them; answers how many existed."""
    ids = sorted(set(lease_ids))
    if not ids:
        return 0
    leases = _locked(session, ids)
    release(session, leases)
    return len(leases)


def leases_of(session: Session, owners: Sequence[str]) -> list[str]:
    return list(
        session.scalars(select(CreditLease.lease_id).where(CreditLease.owner.in_(list(owners))))
    )


def lock_accounts(session: Session, tenants: Iterable[str]) -> None:
    """Lock these accounts first, in the one order every gateway uses: whatever the
    transaction touches next (budgets, leases, a second account update) is then under locks
    taken in that order, so two gateways' commits cannot deadlock."""
    ids = sorted(set(tenants))
    if ids:
        session.connection().execute(
            select(Account.tenant_id)
            .where(Account.tenant_id.in_(ids))
            .order_by(Account.tenant_id)
            .with_for_update()
        )


def _locked(session: Session, ids: list[str]) -> list[CreditLease]:
    tenants = session.scalars(
        select(CreditLease.tenant_id).where(CreditLease.lease_id.in_(ids)).distinct()
    )
    lock_accounts(session, tenants)
    return list(
        session.scalars(select(CreditLease).where(CreditLease.lease_id.in_(ids)).with_for_update())
    )


def release(session: Session, leases: list[CreditLease]) -> None:
    now = utcnow()
    held: dict[str, Decimal] = {}
    for lease in leases:
        held[lease.tenant_id] = held.get(lease.tenant_id, ZERO) + lease.amount
        for scope, scope_id in lease.budgets:
            session.execute(
                update(BudgetPeriod)
                .where(
                    BudgetPeriod.scope == scope,
                    BudgetPeriod.scope_id == scope_id,
                    BudgetPeriod.period == lease.period,
                )
                .values(reserved=BudgetPeriod.reserved - lease.amount)
            )
    params: list[dict[str, Any]] = [
        {"t": t, "charge": ZERO, "held": -amount, "now": now} for t, amount in sorted(held.items())
    ]
    if params:
        session.connection().execute(ACCOUNT_DELTA, params)
    session.execute(
        delete(CreditLease).where(CreditLease.lease_id.in_([x.lease_id for x in leases]))
    )
