"""Usage reports and invoices, summed from the ledger and nothing else.

Amounts keep the ledger's 9 decimal places through every sum; only an invoice's total is
rounded (to cents, half up), so the lines always add up to what the ledger says.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from lingyun.metering.money import ZERO, show, to_cents
from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry


@dataclass
class UsageLine:
    day: str
    model: str
    project_id: str
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    free_tokens: int = 0
    amount: Decimal = ZERO
    currency: str = "CNY"
    # "batch" for Batch API lines (at the batch multiplier), else "interactive"
    lane: str = "interactive"

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day, "model": self.model, "project_id": self.project_id,
            "requests": self.requests, "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens, "completion_tokens": self.completion_tokens,
            "free_tokens": self.free_tokens, "amount": show(self.amount), "currency": self.currency,
            "lane": self.lane,
        }  # fmt: skip


def _bounds(start: date | None, end: date | None) -> tuple[datetime, datetime]:
    lo = datetime.combine(start or date(1970, 1, 1), datetime.min.time(), UTC)
    hi = datetime.combine((end or date(9999, 12, 30)) + timedelta(days=1), datetime.min.time(), UTC)
    return lo, hi


async def usage(
    db: Database, tenant_id: str, start: date | None = None, end: date | None = None
) -> list[UsageLine]:
    """Charges by day x model x project (``end`` inclusive). Amounts are what was charged."""
    lo, hi = _bounds(start, end)
    lines: dict[tuple[str, str, str, str], UsageLine] = {}
    async with db.session() as s:
        rows = await s.stream(
            select(LedgerEntry).where(
                LedgerEntry.tenant_id == tenant_id,
                LedgerEntry.kind == "usage",
                LedgerEntry.created_at >= lo,
                LedgerEntry.created_at < hi,
            )
        )
        async for (e,) in rows:
            lane = "batch" if (e.note or "").startswith("batch ") else "interactive"
            k = (e.created_at.date().isoformat(), e.model or "", e.project_id or "", lane)
            line = lines.get(k) or lines.setdefault(
                k, UsageLine(*k[:3], currency=e.currency, lane=lane)
            )
            line.requests += 1
            line.prompt_tokens += e.prompt_tokens
            line.cached_tokens += e.cached_tokens
            line.completion_tokens += e.completion_tokens
            line.free_tokens += e.free_tokens
            line.amount += -e.amount
    return [lines[k] for k in sorted(lines)]


def month_bounds(month: str) -> tuple[date, date]:
    try:
        first = datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month must look like 2026-11, not {month!r}") from None
    nxt = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, nxt - timedelta(days=1)


async def invoice(db: Database, tenant_id: str, tenant_name: str, month: str) -> dict[str, Any]:
    first, last = month_bounds(month)
    per_model: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0,
                 "free_tokens": 0, "amount": ZERO}
    )  # fmt: skip
    currencies: set[str] = set()
    for line in await usage(db, tenant_id, first, last):
        m = per_model[(line.model, line.lane)]  # batch lines apart, at their multiplier
        for field in (
            "requests",
            "prompt_tokens",
            "cached_tokens",
            "completion_tokens",
            "free_tokens",
        ):
            m[field] += getattr(line, field)
        m["amount"] += line.amount
        currencies.add(line.currency)
    lines = [
        {
            "model": model,
            "lane": lane,
            **{k: v for k, v in m.items() if k != "amount"},
            "amount": show(m["amount"]),
        }
        for (model, lane), m in sorted(per_model.items())
    ]
    exact = sum((m["amount"] for m in per_model.values()), ZERO)
    return {
        "tenant": tenant_name,
        "tenant_id": tenant_id,
        "month": month,
        "currency": ",".join(sorted(currencies)) or "CNY",
        "lines": lines,
        "subtotal": show(exact),
        "total": show(to_cents(exact)),
        "generated_at": datetime.now(UTC).isoformat(),
    }
