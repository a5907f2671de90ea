"""The rate-limit admission policy: match rules, reserve, refuse with headers, correct later.

At admission a request reserves one request and ``prompt + max output`` tokens against every
rule that matches its tenant, project, key and model. The prompt is estimated from the body's
size (about four bytes a token: exact counts come from the engine, and admission must not
tokenize); without ``max_tokens`` a default output reservation stands in. When the request
ends, the reservation becomes the real usage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lingyun.admission.limits import (
    Charge,
    Limiter,
    RuleSet,
    headers_for,
    refusal_message,
)
from lingyun.errors import RateLimitError
from lingyun.gateway.context import RequestContext

# Output tokens reserved against a TPM limit when a request sets no max_tokens.
DEFAULT_OUTPUT_RESERVE = 256


def estimate_prompt_tokens(ctx: RequestContext) -> int:
    """About four bytes a token, from the body's size (or its text, when the size is unknown)."""
    size = ctx.body_bytes
    if not size:
        body = ctx.body
        text: Any = body.get("messages") or body.get("prompt") or body.get("input") or ""
        size = len(json.dumps(text, ensure_ascii=False).encode())
    return max(1, size // 4)


class RateLimitPolicy:
    """An ``Admission`` policy (see ``gateway/admit.py``) over a ``Limiter``."""

    def __init__(
        self,
        rules: Callable[[], RuleSet],
        limiter: Limiter,
        output_reserve: int = DEFAULT_OUTPUT_RESERVE,
    ) -> None:
        self.rules = rules
        self.limiter = limiter
        self.output_reserve = output_reserve
        self._charges: dict[str, tuple[Charge, int]] = {}

    async def admit(self, ctx: RequestContext) -> None:
        if ctx.key is None:
            return
        models = [ctx.model] if ctx.deployment is None else [ctx.model, ctx.deployment.name]
        rules = self.rules().matching(ctx.key, models)
        if not rules:
            return
        prompt = estimate_prompt_tokens(ctx)
        output = ctx.max_output_tokens
        reserved = prompt + (self.output_reserve if output is None else output) * ctx.choices
        charge = Charge(ctx.request_id, ctx.key.tenant_id, rules, reserved)
        outcome = await self.limiter.acquire(charge)
        headers = headers_for(charge, outcome)
        if outcome.refusal is not None:
            raise RateLimitError(refusal_message(outcome.refusal), headers=headers)
        ctx.response_headers.update(headers)
        self._charges[ctx.request_id] = (charge, prompt)

    def sent(self, ctx: RequestContext) -> None:
        return None

    async def release(self, ctx: RequestContext) -> None:
        held = self._charges.pop(ctx.request_id, None)
        if held is None:
            return
        charge, prompt = held
        await self.limiter.release(charge, used_tokens(ctx, prompt))


def used_tokens(ctx: RequestContext, estimated_prompt: int) -> int:
    """Tokens the request really used: the engine's count, else ours, else none."""
    if ctx.usage.reported:
        return ctx.usage.prompt_tokens + ctx.usage.completion_tokens
    if ctx.replica is None and ctx.streamed_pieces == 0:
        return 0  # never reached an engine
    return estimated_prompt + ctx.streamed_pieces
