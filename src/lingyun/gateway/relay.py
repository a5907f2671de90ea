"""Stage 6: send the request to the chosen replica and relay its answer.

Every replica speaks the OpenAI API, so this is one code path for our workers, vLLM,
llama.cpp and public clouds; a peer's quirks are its ``Dialect``'s business. Before the first
byte reaches the client an error is raised (and rendered as JSON with a status); after it,
an error becomes one SSE ``error`` event and the stream ends. We always ask the engine for the
final usage chunk and strip it when the client did not ask for it.

The client is aiohttp: under load httpx's connection pool scans every pooled connection on
each request (quadratic in concurrency), which cost most of the gateway's CPU at 64+
concurrent requests. Events are parsed (for usage and in-band errors) but re-encoded only
when they must change beyond the model name, which is swapped in the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from lingyun.errors import LingyunError, UpstreamError, UpstreamTimeoutError
from lingyun.gateway.chunks import Renamer, without_usage
from lingyun.gateway.context import RequestContext
from lingyun.observability import tracing
from lingyun.protocol import sse

logger = logging.getLogger(__name__)

PATHS = {
    "chat.completions": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "rerank": "/rerank",
}
DONE = b"data: [DONE]\n\n"


class ReplicaUnreachableError(UpstreamError):
    """The connection failed before anything was sent: safe to retry on another replica."""


class StreamBrokenError(UpstreamError):
    """The replica went away mid-stream (connection lost, or the body ended without
    ``[DONE]``): where the reply is tracked (``ctx.reply``), it may continue on a sibling."""


def sse_event(payload: dict[str, Any]) -> bytes:
    return (
        b"data: "
        + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
    )


# Seconds to wait for the end of a body after [DONE], so the connection can be reused.
DRAIN_S = 0.05
# Below uvicorn's 5 s keep-alive, so we never send on a connection the replica is closing.
KEEPALIVE_S = 4.0


class Upstream:
    """A streamed answer being relayed. ``aclose`` returns the connection to the pool when
    the body was read to its end, and drops it otherwise (which stops the replica's work)."""

    __slots__ = ("response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    @property
    def status_code(self) -> int:
        return self.response.status

    async def aclose(self) -> None:
        if self.response.content.at_eof():
            self.response.release()
        else:
            self.response.close()


class Relay:
    def __init__(
        self, timeout_s: float = 600.0, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self._session = session

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created on first use: an aiohttp session belongs to the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=5.0, sock_read=self.timeout_s
                ),
                # Replica addresses are explicit; proxy variables must not reroute them.
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _request(self, ctx: RequestContext) -> tuple[str, bytes, dict[str, str]]:
        replica = ctx.replica
        assert replica is not None  # the router sets it before relay is called
        body = dict(ctx.body)
        body["model"] = ctx.adapter or replica.model_id
        if ctx.stream:
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            if replica.dialect.continuous_usage:
                options["continuous_usage_stats"] = True
            body["stream_options"] = options
        headers = {
            **replica.headers,
            "content-type": "application/json",
            "x-request-id": ctx.client_request_id or ctx.request_id,
        }
        if ctx.client_request_id:  # observability: our own id (the ledger's) as well
            headers["x-lingyun-request-id"] = ctx.request_id
        if ctx.trace is not None:  # the relay span's W3C traceparent
            headers.update(tracing.begin(ctx.trace, "relay"))
        url = replica.base_url + PATHS[ctx.endpoint]
        return url, json.dumps(body, ensure_ascii=False).encode(), headers

    async def _call(self, ctx: RequestContext) -> tuple[int, bytes]:
        """Status and whole body of a non-streaming call."""
        url, body, headers = self._request(ctx)
        try:
            resp = await self.session.post(url, data=body, headers=headers, allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, before_answer=True) from exc
        try:
            return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc) from exc
        finally:
            resp.release()

    async def _open(self, ctx: RequestContext) -> aiohttp.ClientResponse:
        url, body, headers = self._request(ctx)
        try:
            # Never follow a redirect: a misbehaving upstream could point the gateway at an
            # internal URL and have its body relayed to the tenant (see _refuse_redirect).
            return await self.session.post(url, data=body, headers=headers, allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, before_answer=True) from exc

    async def unary(self, ctx: RequestContext) -> bytes:
        """A non-streaming call: the engine's JSON with our model name, or an error."""
        status, raw = await self._call(ctx)
        ctx.first_byte_at = time.perf_counter()
        assert ctx.replica is not None
        dialect = ctx.replica.dialect
        _refuse_redirect(ctx, status)
        if status >= 400:
            raise dialect.translate_error(status, raw)
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise UpstreamError("The model backend returned invalid JSON.") from exc
        if not isinstance(payload, dict):
            raise UpstreamError("The model backend returned an unexpected body.")
        err = dialect.inband_error(payload)
        if err is not None:
            raise err
        take_usage(ctx, payload.get("usage"))
        if ctx.transcript is not None:  # prompt logging, for projects that turned it on
            ctx.transcript.answer(payload)
        renamed = Renamer(ctx.adapter or ctx.replica.model_id, ctx.model)(raw, payload)
        if renamed is not None:
            return renamed
        payload["model"] = ctx.model
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    async def open_stream(self, ctx: RequestContext) -> Upstream:
        """Start a stream; errors before the first byte are raised, not streamed."""
        resp = await self._open(ctx)
        assert ctx.replica is not None
        dialect = ctx.replica.dialect
        if 300 <= resp.status < 400:
            resp.close()
            _refuse_redirect(ctx, resp.status)
        if resp.status >= 400:
            try:
                body = await resp.read()
            finally:
                resp.close()
            raise dialect.translate_error(resp.status, body)
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            # Some clouds refuse a stream with a plain JSON body and HTTP 200 (Qianfan v1).
            try:
                body = await resp.read()
            finally:
                resp.close()
            payload = _parse_chunk(body.decode("utf-8", "replace"))
            raise dialect.inband_error(payload) or UpstreamError(
                "The model backend answered a stream request without a stream."
            )
        return Upstream(resp)

    async def events(self, ctx: RequestContext, resp: Upstream) -> AsyncIterator[bytes]:
        """Relay SSE events as they come, one by one; the caller closes ``resp``."""
        async for batch in self.batches(ctx, resp):
            for event in batch:
                yield event

    async def body(self, ctx: RequestContext, resp: Upstream) -> AsyncIterator[bytes]:
        """``events``, but those that arrived in one network read leave in one write: the
        same bytes with fewer sends (per-chunk ASGI sends were a tenth of a streaming
        gateway's CPU)."""
        async for batch in self.batches(ctx, resp):
            yield batch[0] if len(batch) == 1 else b"".join(batch)

    async def batches(self, ctx: RequestContext, resp: Upstream) -> AsyncIterator[list[bytes]]:
        """The client's SSE events, a non-empty list per upstream network read."""
        assert ctx.replica is not None
        rename = Renamer(ctx.adapter or ctx.replica.model_id, ctx.model)
        out: list[bytes] = []
        finished = False
        failure: LingyunError
        try:
            async for batch in sse.events(resp.response.content.iter_any()):
                for upstream_event in batch:
                    data = upstream_event.data
                    if data == b"[DONE]":
                        finished = True
                        break
                    if upstream_event.type == b"error":
                        raise _error_event(ctx, data)
                    event = _event(ctx, data, rename)
                    if event is not None:
                        out.append(event)
                if finished:
                    break
                if out:
                    ready, out = out, []
                    yield ready
            if not finished:
                raise StreamBrokenError("The model backend ended the stream early.")
            ctx.stream_ended = True
            out.append(DONE)
            yield out
        except LingyunError as err:
            failure = err
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = StreamBrokenError(
                f"The model backend stopped mid-stream: {type(exc).__name__}"
            )
        else:
            await _drain(resp.response)
            return
        if isinstance(failure, StreamBrokenError) and ctx.reply is not None:
            if out:
                yield out
            raise failure  # the caller may continue the reply elsewhere (gateway/resume.py)
        record_error(ctx, failure)
        ctx.stream_ended = True
        out.append(sse_event(failure.to_body()))
        yield out


def _event(ctx: RequestContext, data: bytes, rename: Renamer) -> bytes | None:
    """One upstream event as the client gets it, or None when it is dropped."""
    chunk = _parse_chunk(data)
    assert ctx.replica is not None
    err = ctx.replica.dialect.inband_error(chunk)
    if err is not None:
        raise err
    raw: bytes | None = data
    if ctx.stitch is not None:  # a continued stream: reads as the first one (re-encoded)
        stitched = ctx.stitch(chunk)
        if stitched is None:
            return None
        chunk, raw = stitched, None
    usage = chunk.get("usage")
    if usage:
        take_usage(ctx, usage)
    if not chunk.get("choices"):
        if usage and not ctx.client_wants_usage:
            return None  # the final usage chunk we asked for, not the client
    else:
        if ctx.reply is not None:
            ctx.reply.feed(chunk)
        ctx.streamed_pieces += 1
        for hook in ctx.token_hooks:
            hook(1)
        if ctx.transcript is not None:
            ctx.transcript.chunk(chunk)
        if usage and not ctx.client_continuous_usage:
            # usage on every chunk is our request to the engine, not the client's
            chunk["usage"] = None
            raw = None if raw is None else without_usage(raw, usage)
    if ctx.first_byte_at is None:
        ctx.first_byte_at = time.perf_counter()
    renamed = None if raw is None else rename(raw, chunk)
    if renamed is None:
        chunk["model"] = ctx.model
        return sse_event(chunk)
    return b"data: " + renamed + b"\n\n"


def _error_event(ctx: RequestContext, data: bytes) -> LingyunError:
    """An ``event: error``: the upstream's own error body when it has one."""
    assert ctx.replica is not None
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    err = ctx.replica.dialect.inband_error(payload) if isinstance(payload, dict) else None
    return err or UpstreamError("The model backend sent an error event.")


def _refuse_redirect(ctx: RequestContext, status: int) -> None:
    """A 3xx from a replica or upstream is a failure, never followed: the gateway only talks
    to the addresses its operator configured. The target is not logged (it may carry
    credentials)."""
    if 300 <= status < 400:
        replica = ctx.replica.replica_id if ctx.replica is not None else "?"
        logger.warning("backend %s answered %s (a redirect); not following it", replica, status)
        raise UpstreamError("The model backend answered with a redirect, which is not followed.")


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read what follows [DONE] (the chunked body's end) so the connection is reused."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with asyncio.timeout(DRAIN_S):
            while not resp.content.at_eof() and await resp.content.readany():
                pass


def _translate(
    exc: aiohttp.ClientError | TimeoutError, before_answer: bool = False
) -> LingyunError:
    """aiohttp's exceptions, mapped at our edge. Retryable on another replica: a refused
    connection, and a connection dropped before the replica answered at all (it died, or
    closed a pooled connection) — nothing of the answer can have reached the client."""
    if isinstance(exc, TimeoutError):  # aiohttp's socket timeouts are TimeoutErrors too
        return UpstreamTimeoutError("The model backend did not answer in time.")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ReplicaUnreachableError(f"Could not connect to the model backend: {exc}")
    if before_answer and isinstance(exc, aiohttp.ClientConnectionError):  # reset, EOF, …
        return ReplicaUnreachableError("The model backend closed the connection before answering.")
    return UpstreamError(f"The model backend failed: {type(exc).__name__}")


def _parse_chunk(data: str | bytes) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise UpstreamError("The model backend sent an invalid stream event.") from exc
    if not isinstance(chunk, dict):
        raise UpstreamError("The model backend sent an unexpected stream event.")
    return chunk


def take_usage(ctx: RequestContext, usage: Any) -> None:
    """Adopt the engine's token counts (the last report wins)."""
    if not isinstance(usage, dict):
        return
    u = ctx.usage
    u.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    u.completion_tokens = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        u.cached_tokens = int(details.get("cached_tokens") or 0)
    out_details = usage.get("completion_tokens_details")
    if isinstance(out_details, dict):
        u.reasoning_tokens = int(out_details.get("reasoning_tokens") or 0)
    u.reported = True


def record_error(ctx: RequestContext, err: LingyunError) -> None:
    ctx.status_code = err.status_code
    ctx.error_code = err.code
