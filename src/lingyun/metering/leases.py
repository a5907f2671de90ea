"""Credit leases in memory: each request is decided here, with no commit of its own.

A gateway holds, per (tenant, project, month), a lease: money the database has already set
aside for it. A request takes its worst case from the lease's ``left`` and gives back what
it did not spend when it settles; only when the lease cannot cover a request does the
request wait, for one transaction that grows the lease (several requests waiting on the same
lease share it). A lease unused for ``IDLE_S`` (or retired because the budgets over it
changed) goes back to its account once nothing it covers is left unfolded.

Overspend is bounded by what the database set aside: every gateway's leases together never
exceed the balance, nor a budget's room, because each grow is decided under the account's
lock. What one gateway's idle lease holds is unavailable to the others until it goes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from lingyun.errors import InsufficientQuotaError, ServiceUnavailableError
from lingyun.metering import lease_rows
from lingyun.metering.batch import BillingScopes
from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.money import ZERO
from lingyun.store.db import Database
from lingyun.store.outage import RETRY_AFTER_S, unreachable

# A grow asks for this many of the triggering request's worst case (within lease_rows.SHARE).
GROW_REQUESTS = 64
IDLE_S = 5.0

Budgets = tuple[tuple[str, str], ...]
logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Lease:
    lease_id: str
    tenant_id: str
    project_id: str
    period: str
    budgets: Budgets
    left: Decimal = ZERO  # set aside for this gateway and not promised to a request
    holders: int = 0  # requests running on it, and settlements not yet folded
    used_at: float = field(default_factory=time.monotonic)
    growing: asyncio.Future[None] | None = None


class LeaseBook:
    def __init__(
        self, db: Database, owner: str, scopes: BillingScopes, idle_s: float = IDLE_S
    ) -> None:
        self.db = db
        self.owner = owner
        self.scopes = scopes
        self.idle_s = idle_s
        self._current: dict[tuple[str, str, str], Lease] = {}
        self._held: dict[str, Lease] = {}  # every lease not given back, current or retired

    def holding(self) -> bool:
        return bool(self._held)

    async def take(self, hold: Hold) -> None:
        """Decide ``hold`` against its lease (growing it first if it must); raises the 402
        the database gave when the account or a budget cannot cover it."""
        hold.leased = True
        worst = worst_case(hold)
        if worst == 0:
            return  # nothing to set aside: a free model
        budgets = self._budgets(hold)
        while True:
            lease = self._lease_for(hold, budgets)
            if lease.left >= worst:
                break
            await self._grow(lease, worst, hold.prices.currency)
        lease.left -= worst
        lease.holders += 1
        lease.used_at = time.monotonic()
        hold.amount, hold.lease_id, hold.budgets = worst, lease.lease_id, list(budgets)

    def settle(self, s: Settlement) -> bool:
        """Give back what ``s`` did not spend; answers whether it must be folded (it reached
        an engine, so it has a ledger entry, even of zero)."""
        hold = s.hold
        lease = self._held.get(hold.lease_id)
        if not s.reached_engine:
            if lease is not None:
                lease.left += hold.amount
                lease.holders -= 1
            return False
        if lease is not None:
            lease.left += hold.amount - s.capped().charge()
        return True

    def folded(self, settlements: list[Settlement]) -> None:
        for s in settlements:
            lease = self._held.get(s.hold.lease_id)
            if lease is not None:
                lease.holders -= 1

    def idle(self, *, everything: bool = False) -> list[str]:
        """Leases to give back now (all that nothing holds, if ``everything``)."""
        now, out = time.monotonic(), []
        current = set(map(id, self._current.values()))
        for lease in list(self._held.values()):
            retired = id(lease) not in current
            if lease.holders or lease.growing is not None:
                continue
            if everything or retired or now - lease.used_at >= self.idle_s:
                out.append(lease.lease_id)
                del self._held[lease.lease_id]
                if not retired:
                    del self._current[(lease.tenant_id, lease.project_id, lease.period)]
        return out

    def _budgets(self, hold: Hold) -> Budgets:
        budgets = self.scopes.budgets
        if not budgets:
            return ()
        t, p = ("tenant", hold.tenant_id), ("project", hold.project_id)
        return (*((t,) if t in budgets else ()), *((p,) if p in budgets else ()))

    def _lease_for(self, hold: Hold, budgets: Budgets) -> Lease:
        key = (hold.tenant_id, hold.project_id, hold.period)
        lease = self._current.get(key)
        if lease is None or lease.budgets != budgets:  # new, or the budgets over it changed
            lease = Lease(uuid.uuid4().hex, hold.tenant_id, hold.project_id, hold.period, budgets)
            self._current[key] = lease
            self._held[lease.lease_id] = lease
        return lease

    async def _grow(self, lease: Lease, worst: Decimal, currency: str) -> None:
        """Grow ``lease`` (or wait for the grow under way); the grow runs to its end in
        its own task, so a client leaving meanwhile cannot lose what it granted."""
        if lease.growing is not None:
            await asyncio.shield(lease.growing)
            return
        ask = lease_rows.Ask(
            lease.lease_id, self.owner, lease.tenant_id, lease.project_id, lease.period,
            lease.budgets, need=worst - lease.left, want=worst * GROW_REQUESTS,
            left=lease.left, currency=currency,
        )  # fmt: skip
        growing = lease.growing = asyncio.ensure_future(self._grown(lease, ask))
        await asyncio.shield(growing)

    async def _grown(self, lease: Lease, ask: lease_rows.Ask) -> None:
        try:
            granted = await self._granted(ask)
        finally:
            lease.growing = None
        if isinstance(granted, InsufficientQuotaError):
            raise granted
        lease.left += granted

    async def _granted(self, ask: lease_rows.Ask) -> Decimal | InsufficientQuotaError:
        try:
            return await self.db.transaction(
                lambda s: lease_rows.grow(s, ask, self.scopes), durable=False
            )
        except Exception as exc:
            # as for a per-request reservation: whatever stopped the commit, the request is
            # not started (a grow cut off mid-commit may have landed: it goes back with the
            # lease, which releases what the database holds, not what memory thinks)
            if not unreachable(exc):
                logger.exception("growing credit lease %s failed", ask.lease_id)
            raise ServiceUnavailableError(
                "Billing is temporarily unavailable; the request was not started.",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from exc


def worst_case(hold: Hold) -> Decimal:
    """What a request sets aside: the full price of its bounds."""
    return hold.prices.cost(hold.prompt_upper, 0, hold.output_upper)
