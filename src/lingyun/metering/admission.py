"""Billing as an admission policy: reserve the worst case before the engine, settle after.

The reservation is decided before the engine is asked: in memory against this gateway's
credit lease on the account (no commit), or, for a batch line or while a free quota applies,
by a durable reservation row (``Journal.reserve``).

Worst case: every prompt token is at least one byte of the request body, so the body's size
bounds the prompt; the output is bounded by ``max_tokens`` (× ``n``), or by the deployment's
``max_output_tokens`` when the client gives none (the resolve step then sends that bound
upstream). Charges are capped at the reservation. Spend therefore never exceeds the balance.

What is charged: the engine's reported usage of what the client received. A stream cut off by
the client or by an engine failure pays for the prompt and the tokens streamed so far (exact
where the engine reports usage on every chunk); a request that failed before anything reached
the client pays nothing, but still gets its (zero) ledger entry.
"""

from __future__ import annotations

from lingyun.gateway.context import RequestContext
from lingyun.gateway.settle import estimate_prompt_tokens, finalize_usage
from lingyun.metering.holds import Hold, Settlement, period_of
from lingyun.metering.journal import Journal
from lingyun.metering.pricing import PriceBook
from lingyun.store.models import utcnow


class BillingAdmission:
    def __init__(self, journal: Journal, prices: PriceBook) -> None:
        self.journal = journal
        self.prices = prices

    async def admit(self, ctx: RequestContext) -> None:
        key, dep = ctx.key, ctx.deployment
        assert key is not None and dep is not None  # authenticate and resolve ran first
        bound = dep.output_bound() if ctx.max_output_tokens is None else ctx.max_output_tokens
        output_upper = bound * ctx.choices
        estimate = estimate_prompt_tokens(ctx)
        hold = Hold(
            request_id=ctx.request_id,
            tenant_id=key.tenant_id,
            project_id=key.project_id,
            key_id=key.key_id,
            model=ctx.model,
            period=period_of(utcnow()),
            prices=self.prices.for_request(
                ctx.model, estimate, key.tenant_id, batch=ctx.lane == "batch"
            ),
            lane=ctx.lane,
            prompt_upper=ctx.body_bytes,
            output_upper=output_upper,
            prompt_estimate=estimate,
        )
        ctx.hold = hold
        await self.journal.reserve(hold)

        def progress() -> tuple[int, int]:
            if ctx.first_byte_at is None:
                return 0, 0  # nothing reached the client: a crash now costs it nothing
            return _delivered_counts(ctx)

        self.journal.track(ctx.request_id, progress)
        # each streamed chunk's counts reach the OS before the chunk reaches the client
        ctx.token_hooks.append(lambda _: self.sent(ctx))

    def sent(self, ctx: RequestContext) -> None:
        """What reached the client so far goes to the delivery log before it is sent (a
        stream's chunk by chunk, a whole answer as it leaves), so a crash before the
        settlement commits still charges it."""
        if isinstance(ctx.hold, Hold):
            self.journal.delivered(ctx.request_id, _delivered_counts(ctx))

    async def release(self, ctx: RequestContext) -> None:
        hold = ctx.hold
        if not isinstance(hold, Hold):
            return
        finalize_usage(ctx)
        u = ctx.usage
        reached = ctx.replica is not None
        if not reached or not _delivered(ctx):
            # Nothing reached the client: an engine failure is not the customer's to pay.
            self.journal.settle(Settlement(hold, 0, 0, 0, 0, "failed", reached_engine=reached))
            return
        note = {200: "served", 499: "cancelled"}.get(ctx.status_code, "failed")
        self.journal.settle(
            Settlement(
                hold,
                prompt_tokens=u.prompt_tokens,
                cached_tokens=u.cached_tokens,
                completion_tokens=u.completion_tokens,
                reasoning_tokens=u.reasoning_tokens,
                note=note,
            )
        )


def _delivered_counts(ctx: RequestContext) -> tuple[int, int]:
    """(prompt, completion) tokens delivered: the engine's report, else our own counts."""
    u = ctx.usage
    if u.reported:
        return u.prompt_tokens, u.completion_tokens
    return estimate_prompt_tokens(ctx), ctx.streamed_pieces


def _delivered(ctx: RequestContext) -> bool:
    """Did the client get (part of) an answer? A stream did once its first event went out;
    a plain request did if it succeeded, or if the client left while the engine worked."""
    if ctx.stream:
        return ctx.first_byte_at is not None
    return ctx.status_code in (200, 499)
