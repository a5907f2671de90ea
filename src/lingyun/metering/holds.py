"""What the journal moves: a hold (a reservation in memory) and its settlement."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

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

    def split_free(self) -> tuple[int, int, int]:
        """Tokens paid by free quota (prompt first), then the paid prompt and completion."""
        free = min(self.hold.free_tokens, self.prompt_tokens + self.completion_tokens)
        free_prompt = min(free, self.prompt_tokens)
        free_completion = free - free_prompt
        return free, self.prompt_tokens - free_prompt, self.completion_tokens - free_completion

    def charge(self) -> Decimal:
        _, paid_prompt, paid_completion = self.split_free()
        cached = min(self.cached_tokens, paid_prompt)
        reasoning = min(self.reasoning_tokens, paid_completion)
        return self.hold.prices.cost(paid_prompt, cached, paid_completion, reasoning)
