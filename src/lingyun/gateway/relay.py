"""Stage 6: send the request to the chosen replica and relay its answer.

Every replica speaks the OpenAI API, so this is one code path for our workers, vLLM,
llama.cpp and public clouds; a peer's quirks are its ``Dialect``'s business. Before the first
byte reaches the client an error is raised (and rendered as JSON with a status); after it,
an error becomes one SSE ``error`` event and the stream ends. We always ask the engine for the
final usage chunk and strip it when the client did not ask for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from lingyun.errors import LingyunError, UpstreamError, UpstreamTimeoutError
from lingyun.gateway.context import RequestContext

logger = logging.getLogger(__name__)

PATHS = {
    "chat.completions": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
DONE = b"data: [DONE]\n\n"


class ReplicaUnreachableError(UpstreamError):
    """The connection failed before anything was sent: safe to retry on another replica."""


def sse_event(payload: dict[str, Any]) -> bytes:
    return (
        b"data: "
        + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
    )


class Relay:
    def __init__(self, timeout_s: float = 600.0, client: httpx.AsyncClient | None = None) -> None:
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=5.0, pool=timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=4096),
            # Replica addresses are explicit; proxy variables must not reroute them.
            trust_env=False,
        )

    async def close(self) -> None:
        await self.client.aclose()

    def _request(self, ctx: RequestContext) -> httpx.Request:
        replica = ctx.replica
        assert replica is not None  # the router sets it before relay is called
        body = dict(ctx.body)
        body["model"] = replica.model_id
        if ctx.stream:
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        headers = {
            **replica.headers,
            "content-type": "application/json",
            "x-request-id": ctx.request_id,
        }
        return self.client.build_request(
            "POST",
            replica.base_url + PATHS[ctx.endpoint],
            content=json.dumps(body, ensure_ascii=False).encode(),
            headers=headers,
        )

    async def _send(self, ctx: RequestContext, stream: bool) -> httpx.Response:
        try:
            return await self.client.send(self._request(ctx), stream=stream)
        except httpx.ConnectError as exc:
            raise ReplicaUnreachableError(f"Could not connect to the model backend: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeoutError("The model backend did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"The model backend failed: {type(exc).__name__}") from exc

    async def unary(self, ctx: RequestContext) -> bytes:
        """A non-streaming call: the engine's JSON with our model name, or an error."""
        resp = await self._send(ctx, stream=False)
        ctx.first_byte_at = time.perf_counter()
        assert ctx.replica is not None
        dialect = ctx.replica.dialect
        if resp.status_code >= 400:
            raise dialect.translate_error(resp.status_code, resp.content)
        try:
            payload = json.loads(resp.content)
        except ValueError as exc:
            raise UpstreamError("The model backend returned invalid JSON.") from exc
        if not isinstance(payload, dict):
            raise UpstreamError("The model backend returned an unexpected body.")
        err = dialect.inband_error(payload)
        if err is not None:
            raise err
        take_usage(ctx, payload.get("usage"))
        payload["model"] = ctx.model
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    async def open_stream(self, ctx: RequestContext) -> httpx.Response:
        """Start a stream; errors before the first byte are raised, not streamed."""
        resp = await self._send(ctx, stream=True)
        assert ctx.replica is not None
        dialect = ctx.replica.dialect
        if resp.status_code >= 400:
            body = await resp.aread()
            await resp.aclose()
            raise dialect.translate_error(resp.status_code, body)
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            # Some clouds refuse a stream with a plain JSON body and HTTP 200 (Qianfan v1).
            body = await resp.aread()
            await resp.aclose()
            payload = _parse_chunk(body.decode("utf-8", "replace"))
            raise dialect.inband_error(payload) or UpstreamError(
                "The model backend answered a stream request without a stream."
            )
        return resp

    async def events(self, ctx: RequestContext, resp: httpx.Response) -> AsyncIterator[bytes]:
        """Relay SSE events as they come; the caller closes ``resp``."""
        assert ctx.replica is not None
        dialect = ctx.replica.dialect
        finished = False
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                chunk = _parse_chunk(data)
                err = dialect.inband_error(chunk)
                if err is not None:
                    raise err
                usage = chunk.get("usage")
                if usage:
                    take_usage(ctx, usage)
                if not chunk.get("choices"):
                    if usage and not ctx.client_wants_usage:
                        continue
                else:
                    ctx.streamed_pieces += 1
                    for hook in ctx.token_hooks:
                        hook(1)
                    if usage and not ctx.client_wants_usage:
                        chunk["usage"] = None
                chunk["model"] = ctx.model
                if ctx.first_byte_at is None:
                    ctx.first_byte_at = time.perf_counter()
                yield sse_event(chunk)
            if not finished:
                raise UpstreamError("The model backend ended the stream early.")
            ctx.stream_ended = True
            yield DONE
        except LingyunError as err:
            record_error(ctx, err)
            ctx.stream_ended = True
            yield sse_event(err.to_body())
        except httpx.HTTPError as exc:
            broken = UpstreamError(f"The model backend stopped mid-stream: {type(exc).__name__}")
            record_error(ctx, broken)
            ctx.stream_ended = True
            yield sse_event(broken.to_body())


def _parse_chunk(data: str) -> dict[str, Any]:
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
