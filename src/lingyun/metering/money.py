"""Money is ``Decimal`` end to end: prices per 1M tokens, amounts kept to 9 decimal places
until a total is rounded for an invoice."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

PER_MILLION = Decimal(1_000_000)
STORED = Decimal("0.000000001")  # what Numeric(24, 9) keeps
CENTS = Decimal("0.01")
ZERO = Decimal(0)


def stored(value: Decimal) -> Decimal:
    return value.quantize(STORED, rounding=ROUND_HALF_UP)


def to_cents(value: Decimal) -> Decimal:
    return value.quantize(CENTS, rounding=ROUND_HALF_UP)


def show(value: Decimal) -> str:
    """Plain decimal notation for JSON and CSV (``str`` gives ``0E-9`` for a stored zero)."""
    return format(value.normalize() if value == 0 else value, "f")


def parse_money(raw: str | int | float | Decimal, what: str) -> Decimal:
    """A non-negative decimal from user input; floats go through ``str`` so 0.1 stays 0.1."""
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"{what} must be a decimal number, not {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{what} must be a non-negative number, not {raw!r}")
    if value != value.quantize(STORED):
        raise ValueError(f"{what} has more than 9 decimal places: {raw!r}")
    return value
