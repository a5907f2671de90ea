"""What the fair queue charges a tenant's virtual counter for a request: the units it pays.

Where the request is priced (metering on and the model has a price: its reservation carries
the unit prices, per million tokens, after tenant overrides and tiers), the counter moves by
the request's cost at those prices: uncached input, cached input at the cached price, output
(reasoning at its own price). Fairness and billing then count the same thing, so a tenant
whose prompts hit the prefix cache, and pay less for them, is also charged less service. An
unpriced request (metering off, or a free model) is counted in weighted tokens instead:
``input_weight`` per prompt token, cached or not, and ``output_weight`` per output token.

Admission charges the prompt estimate at the input rate (cached tokens are not known yet),
each streamed token at the output rate, and the release settles the difference against the
engine's counts. Counters are floats: they order tenants, they are not money.
"""

from __future__ import annotations

from dataclasses import dataclass

from lingyun.gateway.context import RequestContext, Usage
from lingyun.metering.pricing import UnitPrices


@dataclass(frozen=True)
class Rates:
    input: float
    cached_input: float
    output: float
    reasoning_output: float

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
        return (
            (usage.prompt_tokens - cached) * self.input
            + cached * self.cached_input
            + (usage.completion_tokens - reasoning) * self.output
            + reasoning * self.reasoning_output
        )


def rates_for(ctx: RequestContext, input_weight: float, output_weight: float) -> Rates:
    """The request's unit prices when it is priced, else the weights (module docstring)."""
    prices = getattr(ctx.hold, "prices", None)
    if isinstance(prices, UnitPrices) and (prices.input or prices.output):
        return Rates(
            float(prices.input),
            float(prices.cached_input),
            float(prices.output),
            float(prices.reasoning_output),
        )
    return Rates(input_weight, input_weight, output_weight, output_weight)
