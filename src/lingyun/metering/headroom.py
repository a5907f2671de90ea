"""What this gateway may let start before its reservation is written.

After each commit that decided reservations, the journal knows each of those accounts'
available money (balance less everything reserved) as the database saw it under lock. Until
the next such commit, a request whose worst case fits in what is left of that figure, less
the worst cases of the requests already let through ahead, is very likely to be admitted:
it goes on to its engine while its reservation is written, and waits for the decision only
before its first byte reaches the client. The database still decides every reservation; the
headroom only says when waiting for that decision first is worth its latency.

It can be stale in both directions: a top-up makes it too low (the request just waits, and
the commit refreshes it); another gateway's spending makes it too high (the database then
refuses, and the request ends with the same 402 before anything reached its client, after
its engine worked for nothing). Accounts with budgets or free quotas always wait: their
figure is not the balance alone.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from lingyun.metering.holds import Hold
from lingyun.metering.money import ZERO

if TYPE_CHECKING:
    from lingyun.metering.batch import BillingScopes

# Only this share of the known available money is lent ahead: the rest covers what the
# account's other gateways may have spent since.
AHEAD_SHARE = Decimal("0.5")


class Headroom:
    def __init__(self) -> None:
        self._available: dict[str, Decimal] = {}
        self._ahead: dict[str, Decimal] = {}

    def covers(self, hold: Hold, scopes: BillingScopes) -> bool:
        t = hold.tenant_id
        if t in scopes.quota_tenants or ("tenant", t) in scopes.budgets:
            return False
        if ("project", hold.project_id) in scopes.budgets:
            return False
        available = self._available.get(t)
        if available is None:
            return False
        room = available * AHEAD_SHARE - self._ahead.get(t, ZERO)
        return worst_case(hold) <= room

    def take(self, hold: Hold) -> None:
        """``hold`` goes ahead: count its worst case until its decision lands."""
        t, worst = hold.tenant_id, worst_case(hold)
        self._ahead[t] = self._ahead.get(t, ZERO) + worst
        assert hold.decided is not None
        hold.decided.add_done_callback(lambda _: self._give_back(t, worst))

    def _give_back(self, tenant: str, worst: Decimal) -> None:
        left = self._ahead.get(tenant, ZERO) - worst
        if left > 0:
            self._ahead[tenant] = left
        else:
            self._ahead.pop(tenant, None)

    def seen(self, available: dict[str, Decimal]) -> None:
        """Each account's available money as a commit found it, after its decisions."""
        self._available.update(available)

    def forget(self) -> None:
        self._available.clear()


def worst_case(hold: Hold) -> Decimal:
    """What the reservation will hold: the full price of its bounds (no free tokens)."""
    return hold.prices.cost(hold.prompt_upper, 0, hold.output_upper)
