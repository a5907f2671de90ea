"""Where the request path calls in: ``bind``, ``queued`` and ``observe`` (see pipeline.py).

``observe(ctx)`` runs once per attempt (a fallback to another model is a second attempt with
its own context), from the place where a request releases what it holds. It classifies how
the request ended, adds to the metrics and writes the request log line. It reads the
``RequestContext`` only, so the same function can later consume the accounting Outcome.

How a request ended (``end``), from the context::

    completed       status 200, the answer reached its end
    client_gone     499: the client closed the connection
    engine_error    an error answered by (or on the way to) the replica or cloud
    refused         an error before any replica was picked (limits, quota, access, capacity)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lingyun.observability import labels, metrics
from lingyun.observability.fast import Batch, child
from lingyun.observability.prompt_log import PromptLog
from lingyun.observability.request_log import RequestLog
from lingyun.observability.transcript import Transcript

if TYPE_CHECKING:
    from starlette.requests import Request

    from lingyun.gateway.context import RequestContext

logger = logging.getLogger(__name__)

# Error codes of a refusal (before any engine work) -> the refusal's reason label.
REFUSAL_REASONS = {
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "quota",
    "model_not_found": "access",
    "permission_denied": "access",
    "invalid_api_key": "auth",
    "service_unavailable": "capacity",
}


@dataclass
class Observer:
    """What is on: metrics, the request log, prompt logging (for projects that ask for it).
    Configured once at server start."""

    metrics: bool = True
    log: RequestLog | None = None
    prompts: PromptLog | None = None


OBSERVER = Observer()


def configure(*, metrics_on: bool, log: RequestLog | None) -> None:
    OBSERVER.metrics = metrics_on
    OBSERVER.log = log


def bind(ctx: RequestContext, request: Request) -> None:
    """Give the context the request ids the middleware chose (``request_id.py``)."""
    state = request.scope.get("state")
    if state is None:
        return
    rid = state.get("request_id")
    if rid:
        ctx.request_id = rid
    ctx.client_request_id = state.get("client_request_id")
    state["observed"] = True  # the pipeline counts it; the middleware need not


def transcribe(ctx: RequestContext) -> None:
    """Prompt logging: only a key whose project turned it on gets a transcript."""
    key = ctx.key
    if key is not None and key.prompt_log_retention_s and OBSERVER.prompts is not None:
        ctx.transcript = Transcript(ctx.body, key.prompt_log_retention_s)


def public_id(ctx: RequestContext) -> str:
    """The id the client sees: its own X-Request-ID when it sent a valid one."""
    return ctx.client_request_id or ctx.request_id


class _Gaps:
    """A token hook: the time between consecutive streamed events, added up at the end."""

    __slots__ = ("batch", "last")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.last: float | None = None

    def __call__(self, _tokens: int) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.batch.observe(now - self.last)
        self.last = now


async def queued(ctx: RequestContext, waiting: Awaitable[None]) -> None:
    """Await the capacity queue, counting the request as queued while it waits."""
    dep = ctx.deployment
    if not OBSERVER.metrics or dep is None:
        await waiting
        return
    name = labels.MODELS(dep.name)
    if ctx.stream:
        ctx.token_hooks.append(_Gaps(Batch(child(metrics.ITL, name))))
    gauge = child(metrics.QUEUED, name)
    start = time.perf_counter()
    gauge.inc()
    try:
        await waiting
    finally:
        gauge.dec()
        waited = time.perf_counter() - start
        ctx.marks["queue_s"] = waited
        child(metrics.QUEUE_WAIT, name).observe(waited)


def end_reason(ctx: RequestContext) -> str:
    if ctx.status_code < 400:
        return "completed"
    if ctx.status_code == 499:
        return "client_gone"
    if ctx.replica is None:
        return "refused"
    return "engine_error"


def provider_of(ctx: RequestContext) -> str:
    dep = ctx.deployment
    if dep is None:
        return ""
    return dep.provider or dep.engine


def observe(ctx: RequestContext) -> None:
    """Metrics and the log line for one finished attempt; never raises."""
    try:
        end = end_reason(ctx)
        if OBSERVER.metrics:
            _count(ctx, end)
        if OBSERVER.log is not None:
            OBSERVER.log.write(ctx, end, provider_of(ctx))
        if ctx.transcript is not None and OBSERVER.prompts is not None:
            OBSERVER.prompts.submit(ctx)
    except Exception:
        logger.exception("could not observe request %s", ctx.request_id)


def _count(ctx: RequestContext, end: str) -> None:
    model = labels.MODELS(ctx.deployment.name) if ctx.deployment else labels.UNKNOWN
    code = labels.CODES(ctx.error_code)
    child(metrics.REQUESTS, model, ctx.endpoint, str(ctx.status_code), code).inc()
    usage = ctx.usage
    if usage.prompt_tokens:
        child(metrics.PROMPT_TOKENS, model).inc(usage.prompt_tokens)
    if usage.completion_tokens:
        child(metrics.COMPLETION_TOKENS, model).inc(usage.completion_tokens)
    if usage.cached_tokens:
        child(metrics.CACHED_TOKENS, model).inc(usage.cached_tokens)
    now = time.perf_counter()
    child(metrics.DURATION, model, ctx.endpoint).observe(now - ctx.started)
    if ctx.stream:
        if ctx.first_byte_at is not None:
            child(metrics.TTFT, model).observe(ctx.first_byte_at - ctx.started)
        for hook in ctx.token_hooks:
            if isinstance(hook, _Gaps):
                hook.batch.flush()
    if end == "refused":
        reason = REFUSAL_REASONS.get(ctx.error_code or "")
        if reason is not None:
            child(metrics.REFUSALS, reason).inc()
    elif end == "engine_error":
        child(metrics.UPSTREAM_ERRORS, labels.PROVIDERS(provider_of(ctx)), code).inc()


def observe_unbound(endpoint: str, status: int, code: str | None) -> None:
    """A /v1 request that ended before the pipeline made its context (401, 400, 413)."""
    if not OBSERVER.metrics:
        return
    try:
        metrics.REQUESTS.labels(labels.UNKNOWN, endpoint, str(status), labels.CODES(code)).inc()
        reason = REFUSAL_REASONS.get(code or "")
        if reason is not None:
            metrics.REFUSALS.labels(reason).inc()
    except Exception:
        logger.exception("could not count a request")
