"""What the journal moves: a hold (a reservation in memory) and its settlement."""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from lingyun.metering.money import ZERO
from lingyun.metering.pricing import UnitPrices


def period_of(when: datetime) -> str:
    return when.strftime("%Y-%m")


@dataclass(eq=False)
class Hold:
    """A request's worst case, reserved before it reaches an engine."""

    request_id: str
    tenant_id: str
    project_id: str
    key_id: str
    model: str
    period: str
    prices: UnitPrices
    # Upper bounds: every prompt token is at least one byte, and the output is capped.
    prompt_upper: int
    output_upper: int
    # Best guess of the prompt's tokens until the engine reports them.
    prompt_estimate: int
    # Filled by the journal when it admits the hold.
    amount: Decimal = ZERO
    free_tokens: int = 0
    quota_id: int | None = None
    # The (scope, id) budgets this hold reserved against, settled against the same ones.
    budgets: list[tuple[str, str]] = field(default_factory=list)
    decided: asyncio.Future[None] | None = field(default=None, repr=False)
    # "batch" for a Batch API line (priced at the batch multiplier, invoiced apart).
    lane: str = "interactive"
    # Decided in memory against a credit lease (``lease_id``; empty when the worst case
    # costs nothing), not by a reservation row: its settlement is folded into the lease.
    leased: bool = False
    lease_id: str = ""


def hold_line(hold: Hold) -> bytes:
    """What a crash replay needs to charge a leased request (its parties, prices, bounds),
    as one JSON line; the part shared by a key's requests on one lease is encoded once."""
    shared = _shared(
        hold.tenant_id, hold.project_id, hold.key_id, hold.model, hold.period, hold.prices,
        tuple(hold.budgets), hold.lane, hold.lease_id,
    )  # fmt: skip
    own = f'{{"r":{json.dumps(hold.request_id)},"pu":{hold.prompt_upper},'
    own += f'"ou":{hold.output_upper},"a":"{hold.amount}",'
    return b"H " + own.encode() + shared


@functools.lru_cache(maxsize=4096)
def _shared(
    tenant: str, project: str, key: str, model: str, period: str, prices: UnitPrices,
    budgets: tuple[tuple[str, str], ...], lane: str, lease_id: str,
) -> bytes:  # fmt: skip
    rec = {"t": tenant, "p": project, "k": key, "m": model, "d": period, "x": prices.to_json(),
           "b": budgets, "l": lane, "id": lease_id}  # fmt: skip
    return json.dumps(rec, separators=(",", ":")).encode()[1:] + b"\n"


def hold_from_record(rec: dict[str, Any]) -> Hold:
    return Hold(
        request_id=str(rec["r"]), tenant_id=str(rec["t"]), project_id=str(rec["p"]),
        key_id=str(rec["k"]), model=str(rec["m"]), period=str(rec["d"]),
        prices=UnitPrices.from_json(rec["x"]), prompt_upper=int(rec["pu"]),
        output_upper=int(rec["ou"]), prompt_estimate=0, amount=Decimal(rec["a"]),
        budgets=[(str(s), str(i)) for s, i in rec["b"]], lane=str(rec["l"]), leased=True,
        lease_id=str(rec["id"]),
    )  # fmt: skip


@dataclass(frozen=True)
class Settlement:
    hold: Hold
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    # served | cancelled | failed | reconciled
    note: str
    # False when the request never reached an engine: the hold is released, nothing charged.
    reached_engine: bool = True

    def capped(self) -> Settlement:
        """The settlement within its hold's bounds: what an engine reports beyond the bound
        we reserved (and sent upstream) is not charged, and no count is negative."""
        h = self.hold
        prompt = max(0, min(self.prompt_tokens, h.prompt_upper))
        completion = max(0, min(self.completion_tokens, h.output_upper))
        cached = max(0, min(self.cached_tokens, prompt))
        reasoning = max(0, min(self.reasoning_tokens, completion))
        counts = (prompt, cached, completion, reasoning)
        if counts == (
            self.prompt_tokens,
            self.cached_tokens,
            self.completion_tokens,
            self.reasoning_tokens,
        ):
            return self
        return replace(
            self,
            prompt_tokens=prompt,
            cached_tokens=cached,
            completion_tokens=completion,
            reasoning_tokens=reasoning,
        )

    def split_free(self) -> tuple[int, int, int]:
        """Tokens paid by free quota (prompt first), then the paid prompt and completion."""
        free = min(self.hold.free_tokens, self.prompt_tokens + self.completion_tokens)
        free_prompt = min(free, self.prompt_tokens)
        free_completion = free - free_prompt
        return free, self.prompt_tokens - free_prompt, self.completion_tokens - free_completion

    def charge(self) -> Decimal:
        """What the tokens cost, never more than the hold reserved."""
        _, paid_prompt, paid_completion = self.split_free()
        cached = min(self.cached_tokens, paid_prompt)
        reasoning = min(self.reasoning_tokens, paid_completion)
        cost = self.hold.prices.cost(paid_prompt, cached, paid_completion, reasoning)
        return min(cost, self.hold.amount)
