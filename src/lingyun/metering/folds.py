"""Folding leased requests into the ledger: many settlements, one transaction.

A leased request has no reservation row: its money was set aside in a credit lease. Its
settlement inserts its ledger entry (the request id is the entry's unique key) and moves
its charge out of the lease: from ``reserved`` to spent on the account and on the lease's
budgets. Only entries this transaction inserted move money, so a settlement folded twice
(replayed after a crash that came after its first fold) charges once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.orm import Session

from lingyun.metering import lease_rows
from lingyun.metering.batch import ACCOUNT_DELTA, insert_for, ledger_row, settle_budgets
from lingyun.metering.holds import Settlement
from lingyun.metering.money import ZERO
from lingyun.store.ledger import LedgerEntry
from lingyun.store.models import utcnow


def fold(session: Session, settlements: Sequence[Settlement]) -> int:
    """Charge each leased settlement once; answers how many entries this fold inserted."""
    todo: dict[str, Settlement] = {}
    for s in settlements:
        todo.setdefault(s.hold.request_id, s.capped())
    if not todo:
        return 0
    now = utcnow()
    charges = {rid: s.charge() for rid, s in todo.items()}
    rows = [ledger_row(s, charges[rid], 0, now) for rid, s in todo.items()]
    insert = insert_for(session, LedgerEntry).on_conflict_do_nothing(index_elements=["entry_key"])
    won = set(session.connection().scalars(insert.returning(LedgerEntry.entry_key), rows))
    per_lease: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for rid in won:
        if todo[rid].hold.lease_id:
            per_lease[todo[rid].hold.lease_id] += charges[rid]
    gone = lease_rows.charge(session, dict(per_lease))
    per_tenant: dict[str, tuple[Decimal, Decimal]] = defaultdict(lambda: (ZERO, ZERO))
    per_budget: dict[tuple[str, str, str], tuple[Decimal, Decimal]] = defaultdict(
        lambda: (ZERO, ZERO)
    )
    for rid in won:
        h, c = todo[rid].hold, charges[rid]
        held = c if h.lease_id and h.lease_id not in gone else ZERO
        spent, unheld = per_tenant[h.tenant_id]
        per_tenant[h.tenant_id] = (spent + c, unheld + held)
        for scope, scope_id in h.budgets:
            bs, bu = per_budget[(scope, scope_id, h.period)]
            per_budget[(scope, scope_id, h.period)] = (bs + c, bu + held)
    params = [
        {"t": t, "charge": c, "held": -u, "now": now}
        for t, (c, u) in sorted(per_tenant.items())
        if c or u
    ]
    if params:
        session.connection().execute(ACCOUNT_DELTA, params)
    settle_budgets(session, {k: v for k, v in per_budget.items() if v != (ZERO, ZERO)})
    return len(won)
