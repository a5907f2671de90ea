"""Prices per model, per 1M tokens, with optional input-length tiers.

The gateway keeps a ``PriceBook`` in memory (refreshed from the ``prices`` table every second)
so pricing costs no database round trip; the unit prices chosen at admission travel with the
reservation and are the ones the settle charges.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from lingyun.metering.money import PER_MILLION, ZERO, parse_money, stored
from lingyun.store.db import Database
from lingyun.store.ledger import Price
from lingyun.store.models import utcnow


@dataclass(frozen=True)
class UnitPrices:
    currency: str
    input: Decimal
    cached_input: Decimal
    output: Decimal
    reasoning_output: Decimal

    def cost(self, prompt: int, cached: int, completion: int, reasoning: int = 0) -> Decimal:
        """Exact cost; ``cached`` is part of ``prompt``, ``reasoning`` part of ``completion``."""
        cached = min(cached, prompt)
        reasoning = min(reasoning, completion)
        total = (
            (prompt - cached) * self.input
            + cached * self.cached_input
            + (completion - reasoning) * self.output
            + reasoning * self.reasoning_output
        )
        return stored(total / PER_MILLION)

    def scaled(self, factor: Decimal) -> UnitPrices:
        """These prices times ``factor`` (a batch line's multiplier)."""
        return UnitPrices(
            self.currency,
            self.input * factor,
            self.cached_input * factor,
            self.output * factor,
            self.reasoning_output * factor,
        )

    def to_json(self) -> dict[str, str]:
        return {
            "currency": self.currency,
            "input": str(self.input),
            "cached_input": str(self.cached_input),
            "output": str(self.output),
            "reasoning_output": str(self.reasoning_output),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnitPrices:
        return cls(
            currency=str(data["currency"]),
            input=Decimal(data["input"]),
            cached_input=Decimal(data["cached_input"]),
            output=Decimal(data["output"]),
            reasoning_output=Decimal(data["reasoning_output"]),
        )


FREE = UnitPrices("CNY", ZERO, ZERO, ZERO, ZERO)


def unit_prices(price: Price, prompt_tokens: int) -> UnitPrices:
    """The prices that apply to a request with this many prompt tokens."""
    inp, out = price.input_per_m, price.output_per_m
    cached = price.cached_input_per_m if price.cached_input_per_m is not None else inp
    for tier in sorted(price.tiers or [], key=lambda t: t.get("up_to") or float("inf")):
        if tier.get("up_to") is None or prompt_tokens <= int(tier["up_to"]):
            inp = Decimal(tier.get("input", inp))
            out = Decimal(tier.get("output", out))
            cached = Decimal(tier.get("cached_input", cached))
            break
    reasoning = price.reasoning_output_per_m if price.reasoning_output_per_m is not None else out
    return UnitPrices(price.currency, inp, cached, out, reasoning)


class PriceBook:
    """In-memory prices; an unpriced model is free (still metered, at zero)."""

    def __init__(self) -> None:
        self._prices: dict[tuple[str, str], Price] = {}

    def replace(self, prices: list[Price]) -> None:
        self._prices = {(p.model, p.tenant_id): p for p in prices}

    def for_request(
        self, model: str, prompt_tokens: int, tenant_id: str = "", *, batch: bool = False
    ) -> UnitPrices:
        """The tenant's price (else the list price) for this prompt's tier; a Batch API
        line pays it times the model's batch multiplier."""
        price = self._prices.get((model, tenant_id)) or self._prices.get((model, ""))
        if price is None:
            return FREE
        unit = unit_prices(price, prompt_tokens)
        return unit.scaled(price.batch_multiplier) if batch else unit

    async def load(self, db: Database) -> None:
        async with db.session() as s:
            self.replace(list((await s.scalars(select(Price))).all()))


def _tiers(tiers: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tier in tiers or []:
        unknown = set(tier) - {"up_to", "input", "cached_input", "output"}
        if unknown:
            raise ValueError(f"unknown tier fields {sorted(unknown)}")
        clean: dict[str, Any] = {"up_to": int(tier["up_to"]) if tier.get("up_to") else None}
        for field in ("input", "cached_input", "output"):
            if field in tier:
                clean[field] = str(parse_money(tier[field], f"tier {field}"))
        out.append(clean)
    return out


async def set_price(
    db: Database,
    model: str,
    *,
    input_per_m: Decimal,
    output_per_m: Decimal,
    cached_input_per_m: Decimal | None = None,
    reasoning_output_per_m: Decimal | None = None,
    currency: str = "CNY",
    batch_multiplier: Decimal = Decimal(1),
    tiers: list[dict[str, Any]] | None = None,
    tenant_id: str = "",
) -> Price:
    """Create or replace a model's price (for one tenant, with ``tenant_id``); requests
    admitted earlier keep their prices."""
    if not currency.isalpha() or len(currency) != 3:
        raise ValueError(f"currency must be a 3-letter code such as CNY or USD, not {currency!r}")
    async with db.session() as s:
        price = await s.get(Price, (model, tenant_id)) or Price(model=model, tenant_id=tenant_id)
        price.currency = currency.upper()
        price.input_per_m = input_per_m
        price.output_per_m = output_per_m
        price.cached_input_per_m = cached_input_per_m
        price.reasoning_output_per_m = reasoning_output_per_m
        price.batch_multiplier = batch_multiplier
        price.tiers = _tiers(tiers)
        price.updated_at = utcnow()
        s.add(price)
        await s.commit()
        return price


async def list_prices(db: Database) -> list[Price]:
    async with db.session() as s:
        rows = await s.scalars(select(Price).order_by(Price.model, Price.tenant_id))
        return list(rows.all())
