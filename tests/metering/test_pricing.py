"""Prices per 1M tokens, tiers by prompt length, exact Decimal arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lingyun.metering.pricing import FREE, UnitPrices, unit_prices
from lingyun.store.ledger import Price

D = Decimal


def _price(**kw: object) -> Price:
    base: dict[str, object] = {
        "model": "m", "currency": "CNY", "input_per_m": D("2"), "output_per_m": D("8"),
        "cached_input_per_m": D("0.5"), "reasoning_output_per_m": None, "tiers": [],
    }  # fmt: skip
    base.update(kw)
    return Price(**base)


@pytest.mark.parametrize(
    ("prompt", "cached", "completion", "reasoning", "expected"),
    [
        pytest.param(1_000_000, 0, 0, 0, D("2"), id="input-only"),
        pytest.param(0, 0, 1_000_000, 0, D("8"), id="output-only"),
        pytest.param(1_000, 400, 10, 0, D("0.00148"), id="cached-share"),
        pytest.param(1, 0, 1, 0, D("0.000010"), id="one-token-each"),
        pytest.param(3, 0, 7, 0, D("0.000062"), id="no-float-drift"),
    ],
)
def test_cost(prompt: int, cached: int, completion: int, reasoning: int, expected: Decimal) -> None:
    prices = unit_prices(_price(), prompt)
    assert prices.cost(prompt, cached, completion, reasoning) == expected


def test_tiers_pick_the_band_of_the_prompt_length() -> None:
    price = _price(
        tiers=[
            {"up_to": 32_000, "input": "2", "output": "8"},
            {"up_to": 128_000, "input": "4", "output": "16"},
            {"up_to": None, "input": "6", "output": "24"},
        ]
    )
    assert unit_prices(price, 1_000).input == D("2")
    assert unit_prices(price, 32_000).input == D("2")
    assert unit_prices(price, 32_001).output == D("16")
    assert unit_prices(price, 500_000).input == D("6")


def test_reasoning_tokens_priced_separately() -> None:
    prices = unit_prices(_price(reasoning_output_per_m=D("20")), 10)
    assert prices.cost(0, 0, 1_000_000, 250_000) == D("6") + D("5")


def test_prices_round_trip_through_json() -> None:
    prices = unit_prices(_price(), 10)
    assert UnitPrices.from_json(prices.to_json()) == prices
    assert FREE.cost(10**9, 0, 10**9) == 0
