"""One batch line through the gateway pipeline, in process, in the ``batch`` lane.

The line runs as the key that created its batch: the same grants, rate limits, reservation
and ledger entry as a synchronous request, with the line's request id as the ledger key.
A line enters the pipeline only when the fair queue has room for it (so it reserves money
only when about to run). A refusal that never reached an engine (a rate limit, a full queue)
is retried after a pause under a fresh attempt id (``<id>.N``): it reserved nothing that
stays, so the line still ends with exactly one ledger entry. Anything that reached an
engine is the line's outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from lingyun.admission.capacity import FairQueue
from lingyun.errors import LingyunError, RateLimitError, ServiceUnavailableError
from lingyun.gateway.intake import CHAT, COMPLETIONS, EMBEDDINGS, Endpoint, context_for
from lingyun.gateway.pipeline import Gateway
from lingyun.protocol.wire import parse_request
from lingyun.tenancy.service import KeyInfo

logger = logging.getLogger(__name__)

ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": COMPLETIONS,
    "/v1/embeddings": EMBEDDINGS,
}
BATCH_LANE = "batch"
RETRY_PAUSE_S = (0.05, 0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class LineOutcome:
    ok: bool
    status_code: int
    request_id: str
    body: dict[str, Any]
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _request() -> Request:
    """A stand-in HTTP request whose client never goes away."""
    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, _never)


def request_body(endpoint: Endpoint, body: dict[str, Any]) -> bytes:
    clean = dict(body)
    if endpoint is not EMBEDDINGS:
        clean.pop("stream", None)  # batch answers are whole responses
        clean.pop("stream_options", None)
    return json.dumps(clean, ensure_ascii=False).encode()


async def run_line(
    gateway: Gateway,
    key: KeyInfo,
    endpoint: Endpoint,
    body: dict[str, Any],
    request_id: str,
    attempt: int = 0,
) -> tuple[LineOutcome, int]:
    """Run a line; returns its outcome and the attempts it used."""
    raw = request_body(endpoint, body)
    while True:
        rid = request_id if attempt == 0 else f"{request_id}.{attempt}"
        try:
            parsed = parse_request(endpoint.model, raw)
            ctx = context_for(endpoint, parsed, len(raw))
        except LingyunError as err:
            return _failed(err, rid), attempt
        ctx.key = key
        ctx.model = ctx.body["model"]
        ctx.request_id = rid
        ctx.lane = BATCH_LANE
        queue = gateway.queue if isinstance(gateway.queue, FairQueue) else None
        room = ""
        try:
            if queue is not None:
                room = gateway.catalog.resolve(key, ctx.model).name
                await queue.wait_for_room(room, rid)
            response = await gateway.run(_request(), ctx)
        except LingyunError as err:
            if _retryable(err, ctx.request_id, ctx.replica is None):
                pause = RETRY_PAUSE_S[min(attempt, len(RETRY_PAUSE_S) - 1)]
                attempt += 1
                await asyncio.sleep(pause)
                continue
            return _failed(err, err.request_id or rid), attempt
        finally:
            if queue is not None and room:
                queue.forget_room(room, rid)
        return _served(bytes(response.body), rid), attempt


def _retryable(err: LingyunError, rid: str, never_routed: bool) -> bool:
    """Refused before any engine saw it (so charged nothing): a rate limit or full queue."""
    if not never_routed or err.request_id not in (None, rid):
        return False
    if isinstance(err, RateLimitError):
        return err.code == "rate_limit_exceeded"
    return isinstance(err, ServiceUnavailableError)


def _failed(err: LingyunError, rid: str) -> LineOutcome:
    return LineOutcome(False, err.status_code, rid, err.to_body())


def _served(raw: bytes, rid: str) -> LineOutcome:
    body: dict[str, Any] = json.loads(raw)
    usage = body.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return LineOutcome(True, 200, rid, body, prompt, cached, completion, reasoning)
