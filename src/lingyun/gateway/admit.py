"""Stage 3: admission — rate limits and budget reservations, before any engine work.

The pipeline calls ``admit`` before routing, ``sent`` as a whole (non-streamed) answer is
about to leave, and ``release`` exactly once afterwards with the final usage. Concrete
policies (RPM/TPM, balances) plug in here; refusals raise
``RateLimitError`` / ``InsufficientQuotaError``.
"""

from __future__ import annotations

from typing import Protocol

from lingyun.gateway.context import RequestContext


class Admission(Protocol):
    async def admit(self, ctx: RequestContext) -> None: ...

    def sent(self, ctx: RequestContext) -> None:
        """A whole answer is leaving: what it carries must outlive a crash from now on."""
        ...

    async def release(self, ctx: RequestContext) -> None: ...


class AdmissionChain:
    """Several policies in order; a refusal releases those already passed."""

    def __init__(self, policies: list[Admission]) -> None:
        self.policies = policies

    async def admit(self, ctx: RequestContext) -> None:
        passed: list[Admission] = []
        try:
            for policy in self.policies:
                await policy.admit(ctx)
                passed.append(policy)
        except Exception:
            for policy in reversed(passed):
                await policy.release(ctx)
            raise

    def sent(self, ctx: RequestContext) -> None:
        for policy in self.policies:
            policy.sent(ctx)

    async def release(self, ctx: RequestContext) -> None:
        for policy in reversed(self.policies):
            await policy.release(ctx)
