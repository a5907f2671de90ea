"""Mid-stream failover: a stream whose replica dies after its first byte continues on a
sibling, and the client sees one stream.

Where a deployment says ``mid_stream_failover: true`` (engines that continue a reply
exactly: config.py), a chat stream of one choice keeps the reply as its client got it
(``ReplyLog``). When the replica goes away mid-stream (the relay raises
``StreamBrokenError`` once it has sent everything it had), the request is routed again,
without the dead replica, as the conversation plus that reply as the final assistant
message with ``continue_final_message`` (``reply.continuation_body``); the sibling's chunks
are stitched on (``reply.Stitch``) so there is no duplicate or missing text, and usage stays
the tenant's: one request, one reservation, one ledger entry for what its client received.
The sibling's re-prefill is recorded as the platform's cost. When no sibling can take it
(none healthy, the reply not continuable, ``MAX_RESUMES`` spent), the client gets the SSE
error event it would have got without the option, and pays for what it received.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from lingyun.errors import LingyunError
from lingyun.gateway.relay import Relay, StreamBrokenError, Upstream, record_error, sse_event
from lingyun.gateway.reply import ReplyLog, Stitch, continuation_body
from lingyun.gateway.settle import estimate_prompt_tokens

if TYPE_CHECKING:
    from lingyun.gateway.context import RequestContext
    from lingyun.serving.replica import Replica

logger = logging.getLogger(__name__)

MAX_RESUMES = 2
CHAT = "chat.completions"
# Opens a stream on a replica not in the given set (the pipeline's routing with retries).
Reroute = Callable[["RequestContext", set[str]], Awaitable[Upstream]]


class Holder(Protocol):
    """What a request holds (the pipeline's finisher): its open upstream and replica slot."""

    upstream: Upstream | None

    def take_replica(self, replica: Replica) -> None: ...

    def drop_replica(self) -> None: ...


def track(ctx: RequestContext) -> None:
    """Keep the reply of a request whose stream may continue elsewhere."""
    dep = ctx.deployment
    one_chat_stream = ctx.stream and ctx.endpoint == CHAT and ctx.choices == 1
    if dep is not None and dep.mid_stream_failover and one_chat_stream:
        ctx.reply = ReplyLog()


async def body(
    relay: Relay, reroute: Reroute, ctx: RequestContext, holder: Holder, resp: Upstream
) -> AsyncIterator[bytes]:
    """The client's SSE body: relayed, and continued on a sibling when its replica dies."""
    original = ctx.body
    tried: set[str] = set()
    for resumes in range(MAX_RESUMES + 1):
        try:
            async for batch in relay.batches(ctx, resp):
                yield batch[0] if len(batch) == 1 else b"".join(batch)
            return
        except StreamBrokenError as broken:
            nxt = None
            if resumes < MAX_RESUMES:
                nxt = await _continue(reroute, ctx, holder, original, tried)
            if nxt is None:
                record_error(ctx, broken)
                ctx.stream_ended = True
                yield sse_event(broken.to_body())
                return
            resp = nxt


def received(ctx: RequestContext) -> tuple[int, int, int]:
    """(prompt, cached, completion) tokens of what the client has: the engine's counts
    (on every chunk), else ours."""
    u = ctx.usage
    if u.reported:
        return u.prompt_tokens, u.cached_tokens, u.completion_tokens
    return estimate_prompt_tokens(ctx), 0, ctx.streamed_pieces


async def _continue(
    reroute: Reroute,
    ctx: RequestContext,
    holder: Holder,
    original: dict[str, Any],
    tried: set[str],
) -> Upstream | None:
    """Open the continuation on a sibling; None (and the dead replica kept for the
    accounting) when there is none to open."""
    dead, reply = ctx.replica, ctx.reply
    if dead is None or reply is None:
        return None
    tried.add(dead.replica_id)
    if holder.upstream is not None:
        await holder.upstream.aclose()
        holder.upstream = None
    counts = received(ctx)
    cont = continuation_body(original, reply.text(), counts[2]) if reply.resumable else None
    if cont is None:
        return None
    holder.drop_replica()
    ctx.stitch, ctx.body = Stitch(reply, counts), cont
    try:
        resp = await reroute(ctx, tried)
    except LingyunError as err:
        logger.warning("%s: no sibling to continue on (%s)", ctx.request_id, err.code)
        holder.drop_replica()  # a sibling that refused the continuation, if any
        holder.take_replica(dead)  # settled as served by the replica that died
        return None
    finally:
        ctx.body = original
    holder.upstream = resp
    logger.warning(
        "%s: replica %s died mid-stream; continuing on %s after %d tokens",
        ctx.request_id,
        dead.replica_id,
        ctx.replica.replica_id if ctx.replica is not None else "?",
        counts[2],
    )
    return resp
