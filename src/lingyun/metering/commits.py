"""What one commit of the journal carries, and how a reservation's decision is delivered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from lingyun.metering.holds import Hold, Settlement


@dataclass
class Commit:
    """What one commit carries: per-request reservations to decide and settle, leased
    settlements to fold, leases to give back."""

    reserves: list[Hold] = field(default_factory=list)
    settles: list[Settlement] = field(default_factory=list)
    folds: list[Settlement] = field(default_factory=list)
    returns: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.reserves or self.settles or self.folds or self.returns)

    def size(self) -> int:
        return len(self.reserves) + len(self.settles) + len(self.folds) + len(self.returns)

    def singles(self) -> list[Commit]:
        """Each row alone, settlements first (they free money for the reserves)."""
        return [
            *(Commit(settles=[s]) for s in self.settles),
            *(Commit(folds=[f]) for f in self.folds),
            *(Commit(returns=[r]) for r in self.returns),
            *(Commit(reserves=[h]) for h in self.reserves),
        ]

    def prepend(self, earlier: Commit) -> None:
        """Put rows to retry ahead of what queued since (their order is the money's)."""
        self.reserves[:0] = earlier.reserves
        self.settles[:0] = earlier.settles
        self.folds[:0] = earlier.folds
        self.returns[:0] = earlier.returns

    def tenants(self) -> set[str]:
        holds = [*self.reserves, *(s.hold for s in self.settles), *(f.hold for f in self.folds)]
        return {h.tenant_id for h in holds}


def retrieved(decided: asyncio.Future[None]) -> None:
    """Mark a refusal as seen: a request that ended before its gate never awaits it."""
    if not decided.cancelled():
        decided.exception()


def resolve(hold: Hold, outcome: Exception | None) -> None:
    if hold.decided is None or hold.decided.done():
        return
    if outcome is None:
        hold.decided.set_result(None)
    else:
        hold.decided.set_exception(outcome)
