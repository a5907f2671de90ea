"""Stage 7: settle — turn what happened into one usage row.

Engines report usage (we always ask for it); when one does not, or a stream broke before its
usage chunk, we count: one token per streamed content piece, and roughly four bytes of
request per prompt token. Such rows are marked ``usage_source="estimated"``.
"""

from __future__ import annotations

from typing import Any, Protocol

from lingyun.gateway.context import RequestContext
from lingyun.store.models import utcnow


class UsageSink(Protocol):
    def submit(self, row: dict[str, Any]) -> None: ...


class Settler:
    def __init__(self, sink: UsageSink) -> None:
        self.sink = sink

    def settle(self, ctx: RequestContext) -> None:
        if ctx.key is None:
            return  # refused before authentication: nothing to record
        finalize_usage(ctx)
        usage = ctx.usage
        self.sink.submit(
            {
                "request_id": ctx.request_id,
                "created_at": utcnow(),
                "tenant_id": ctx.key.tenant_id,
                "project_id": ctx.key.project_id,
                "key_id": ctx.key.key_id,
                "model": ctx.model,
                "endpoint": ctx.endpoint,
                "stream": ctx.stream,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cached_tokens": usage.cached_tokens,
                "usage_source": _source(ctx),
                "latency_ms": round(ctx.elapsed_ms(), 3),
                "ttft_ms": round(t, 3) if (t := ctx.ttft_ms()) is not None else None,
                "status_code": ctx.status_code,
                "error_code": ctx.error_code,
                "replica_id": ctx.replica.replica_id if ctx.replica else None,
                "platform_prompt_tokens": ctx.reply.platform_prompt_tokens if ctx.reply else 0,
            }
        )


def finalize_usage(ctx: RequestContext) -> None:
    """Fill in our own counts where the engine reported none (idempotent)."""
    usage = ctx.usage
    if usage.reported or ctx.replica is None:
        return
    usage.completion_tokens = ctx.streamed_pieces
    usage.prompt_tokens = estimate_prompt_tokens(ctx)


def _source(ctx: RequestContext) -> str:
    if ctx.usage.reported:
        return "engine"
    return "estimated" if ctx.replica is not None else "none"


def estimate_prompt_tokens(ctx: RequestContext) -> int:
    """Our count when the engine gives none: about four bytes of request per token."""
    return max(1, ctx.body_bytes // 4)
