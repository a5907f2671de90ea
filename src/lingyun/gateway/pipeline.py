"""The request pipeline: authenticate -> resolve -> admit -> queue -> route -> relay -> settle.

``Gateway.handle`` runs the stages once, forward, over one ``RequestContext``. Whatever path a
request takes (served, refused, failed, cancelled by the client), ``_finish`` runs exactly
once: it closes the upstream response, returns the replica slot, the queue slot and the
admission reservation, and settles usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from lingyun.config import DeploymentConfig
from lingyun.errors import (
    ClientDisconnectedError,
    InvalidRequestError,
    LingyunError,
)
from lingyun.gateway import resume
from lingyun.gateway.admit import Admission
from lingyun.gateway.authenticate import Authenticator
from lingyun.gateway.context import RequestContext
from lingyun.gateway.failover import RetryBudget, falls_back
from lingyun.gateway.intake import EMBEDDINGS, Endpoint, context_for, read_body
from lingyun.gateway.queue import CapacityQueue
from lingyun.gateway.relay import Relay, ReplicaUnreachableError, Upstream, record_error
from lingyun.gateway.resolve import ModelCatalog
from lingyun.gateway.route import RouterChain
from lingyun.gateway.settle import Settler
from lingyun.observability import hooks as obs
from lingyun.observability import tracing
from lingyun.protocol.wire import parse_request
from lingyun.serving.replica import Replica, ReplicaSource

if TYPE_CHECKING:
    from lingyun.observability.otel import Trace
    from lingyun.serving.channels import ChannelRegistry

logger = logging.getLogger(__name__)

MAX_CONNECT_ATTEMPTS = 3
T = TypeVar("T")


@runtime_checkable
class Activator(Protocol):
    """A replica source that can start a replica on demand (scale from zero)."""

    def replicas(self, deployment: str) -> Sequence[Replica]: ...

    async def activate(self, deployment: str, timeout_s: float) -> bool: ...


class Gateway:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        catalog: ModelCatalog,
        admission: Admission,
        queue: CapacityQueue,
        router: RouterChain,
        relay: Relay,
        settler: Settler,
        replicas: ReplicaSource,
        max_body_bytes: int,
        retry_budget: RetryBudget | None = None,
        activation_timeout_s: float = 60.0,
        channels: ChannelRegistry | None = None,
    ) -> None:
        self.channels = channels
        self.retry_budget = retry_budget or RetryBudget()
        self.activation_timeout_s = activation_timeout_s
        self.authenticator = authenticator
        self.catalog = catalog
        self.admission = admission
        self.queue = queue
        self.router = router
        self.relay = relay
        self.settler = settler
        self.replica_source = replicas
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request, endpoint: Endpoint) -> Response:
        trace = tracing.start(request.headers, endpoint.name)  # None unless traces are on
        status: int | None = None  # unknown when the request is cancelled or a bug escapes
        try:
            with tracing.stage(trace, "authenticate"):
                key = await self.authenticator.authenticate(request.headers.get("authorization"))
            raw = await read_body(request, self.max_body_bytes)
            parsed = parse_request(endpoint.model, raw)
            ctx = context_for(endpoint, parsed, len(raw))
            obs.bind(ctx, request)  # observability: request ids
            ctx.key, ctx.trace = key, trace
            ctx.session_id = request.headers.get("x-session-id")
            ctx.model = ctx.body["model"]
            resp = await self.run(request, ctx)
            if isinstance(resp, _StreamResponse):  # its root span ends with the stream
                resp.trace, trace = trace, None
            status = resp.status_code
            return resp
        except LingyunError as err:
            status = err.status_code
            raise
        finally:
            tracing.end(trace, status)

    async def run(self, request: Request, ctx: RequestContext) -> Response:
        """An authenticated, parsed request: the first model, then its fallbacks (the Batch
        API's runner calls this in process for each line, with ``ctx.lane = "batch"``)."""
        key = ctx.key
        if key is None:
            raise ValueError("run() needs an authenticated context (ctx.key)")
        chain: list[str] = []  # the first model's fallbacks, in order
        attempt = 0
        while True:
            try:
                return await self._attempt(request, ctx)
            except LingyunError as err:
                dep = ctx.deployment
                if attempt == 0 and dep is not None:
                    chain = list(dep.fallbacks)
                if dep is None or attempt >= len(chain) or not falls_back(err, ctx):
                    raise
                # Fallbacks the tenant may not use are skipped, never tried: a 404 naming
                # them would tell the tenant of models it was not granted.
                while attempt < len(chain) and not self.catalog.usable(key, chain[attempt]):
                    attempt += 1
                if attempt >= len(chain):
                    raise
                if not self.retry_budget.withdraw(dep.name):
                    logger.warning("retry budget of %s spent: no fallback", dep.name)
                    raise
                nxt = chain[attempt]
                attempt += 1
                logger.info(
                    "%s: %s failed (%s); trying %s", ctx.request_id, dep.name, err.code, nxt
                )
                ctx = ctx.retarget(nxt, attempt)

    async def _attempt(self, request: Request, ctx: RequestContext) -> Response:
        """One model: resolve, admit, queue, route, relay; settled however it ends."""
        assert ctx.key is not None
        finish = _Finisher(self, ctx)
        handed_off = False
        obs.transcribe(ctx)  # prompt logging, for projects that turned it on
        try:
            with tracing.stage(ctx.trace, "resolve"):
                ctx.deployment = self.catalog.resolve(ctx.key, ctx.model)
                ctx.adapter = self.catalog.adapter_of(ctx.model)
                # prices, grants, quotas, limits, usage: by the canonical name, never an alias
                ctx.model = self.catalog.canonical(ctx.model)
            _check_output_bound(ctx, ctx.deployment)
            _bound_output(ctx, ctx.deployment)
            self.retry_budget.deposit(ctx.deployment.name)
            with tracing.stage(ctx.trace, "admit"):
                await self.admission.admit(ctx)
            finish.admitted = True
            # A client that leaves while queued gives up its place and its reservation.
            with tracing.stage(ctx.trace, "queue"):
                await _unless_disconnected(request, obs.queued(ctx, self.queue.acquire(ctx)))
            finish.queued = True
            if ctx.stream:
                resume.track(ctx)  # mid-stream failover, where the deployment enables it
                resp = await self._with_replica(ctx, finish, self.relay.open_stream)
                finish.upstream = resp
                handed_off = True
                return _StreamResponse(self._stream_body(ctx, finish, resp), finish)
            body = await _unless_disconnected(
                request, self._with_replica(ctx, finish, self.relay.unary)
            )
            self.admission.sent(ctx)
            return Response(body, media_type="application/json", headers=_headers(ctx))
        except LingyunError as err:
            record_error(ctx, err)
            err.request_id = obs.public_id(ctx)
            err.headers = {**ctx.response_headers, **err.headers}
            raise
        except asyncio.CancelledError:
            ctx.status_code, ctx.error_code = 499, "client_disconnected"
            raise
        except Exception:  # a bug: the client gets a 500, and the request log says so
            ctx.status_code, ctx.error_code = 500, "internal_error"
            raise
        finally:
            if not handed_off:
                await finish()

    def _stream_body(
        self, ctx: RequestContext, finish: _Finisher, resp: Upstream
    ) -> AsyncIterator[bytes]:
        if ctx.reply is None:
            return self.relay.body(ctx, resp)

        def reroute(c: RequestContext, exclude: set[str]) -> Awaitable[Upstream]:
            return self._with_replica(c, finish, self.relay.open_stream, exclude)

        return resume.body(self.relay, reroute, ctx, finish, resp)

    async def _with_replica(
        self,
        ctx: RequestContext,
        finish: _Finisher,
        call: Callable[[RequestContext], Awaitable[T]],
        exclude: set[str] | None = None,
    ) -> T:
        """Route and call (on a replica not in ``exclude``); a connection refused before
        any byte is retried elsewhere."""
        dep = ctx.deployment
        assert dep is not None
        channels = self.channels.get(dep.name) if self.channels is not None else None
        if channels is not None:  # an upstream with channels: weights, tiers, breakers
            return await channels.call(ctx, finish, call)
        tried: set[str] = set(exclude or ())
        while True:
            candidates = [
                r for r in self.replica_source.replicas(dep.name) if r.replica_id not in tried
            ]
            if not tried and not any(r.healthy for r in candidates):
                candidates = await self._activate(dep, candidates)
            with tracing.stage(ctx.trace, "route"):
                replica = self.router.route(ctx, candidates)
            finish.take_replica(replica)
            try:
                return await call(ctx)
            except ReplicaUnreachableError:
                tried.add(replica.replica_id)
                finish.drop_replica()
                if len(tried) >= MAX_CONNECT_ATTEMPTS:
                    raise
                logger.warning("replica %s unreachable; retrying elsewhere", replica.replica_id)

    async def _activate(self, dep: DeploymentConfig, candidates: list[Replica]) -> list[Replica]:
        """A deployment scaled to zero (or still starting): hold the request while a replica
        starts, up to the activation timeout; the router then answers 503 if none came."""
        source = self.replica_source
        if not isinstance(source, Activator):
            return candidates
        if await source.activate(dep.name, self.activation_timeout_s):
            return list(source.replicas(dep.name))
        return candidates


class _Finisher:
    """Releases everything a request holds, exactly once."""

    def __init__(self, gateway: Gateway, ctx: RequestContext) -> None:
        self.gateway = gateway
        self.ctx = ctx
        self.admitted = False
        self.queued = False
        self.upstream: Upstream | None = None
        self._done = False

    def take_replica(self, replica: Replica) -> None:
        self.ctx.replica = replica
        replica.inflight += 1

    def drop_replica(self) -> None:
        if self.ctx.replica is not None:
            self.ctx.replica.inflight -= 1
            self.ctx.replica = None

    async def __call__(self) -> None:
        if self._done:
            return
        self._done = True
        ctx, gw = self.ctx, self.gateway
        try:
            if self.upstream is not None:
                await self.upstream.aclose()
        finally:
            if ctx.replica is not None:
                ctx.replica.inflight -= 1
            if self.queued:
                gw.queue.release(ctx)
            try:
                if self.admitted:
                    await gw.admission.release(ctx)
            finally:
                tracing.finish(ctx.trace, "relay")
                with tracing.stage(ctx.trace, "settle"):
                    gw.settler.settle(ctx)
                obs.observe(ctx)  # observability: metrics + request log; move onto Outcome


class _StreamResponse(StreamingResponse):
    """An SSE response that settles when it ends, however it ends (even if never iterated)."""

    def __init__(self, content: Any, finish: _Finisher) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={**_headers(finish.ctx), "cache-control": "no-cache"},
        )
        self._finish = finish
        self.trace: Trace | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = self._finish.ctx
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Starlette ends a stream quietly: one that did not reach its end was cut off.
            if not ctx.stream_ended and ctx.status_code == 200:
                ctx.status_code, ctx.error_code = 499, "client_disconnected"
            await self._finish()
            tracing.end(self.trace, ctx.status_code)


def _bound_output(ctx: RequestContext, dep: DeploymentConfig) -> None:
    """A declared ``max_output_tokens`` goes upstream when the client set no limit: the
    reservation is sized for it. (Undeclared, what passes the reserved default is free.)"""
    if ctx.endpoint != EMBEDDINGS.name and ctx.max_output_tokens is None and dep.bounds_output():
        ctx.max_output_tokens = dep.output_bound()
        ctx.body["max_tokens"] = ctx.max_output_tokens


def _check_output_bound(ctx: RequestContext, dep: DeploymentConfig) -> None:
    bound = dep.output_bound() if dep.bounds_output() else None
    if bound is not None and ctx.max_output_tokens is not None and ctx.max_output_tokens > bound:
        raise InvalidRequestError(
            f"max_tokens is {ctx.max_output_tokens}, more than model `{ctx.model}` allows "
            f"({bound}); ask for at most {bound}.",
            param="max_tokens",
        )


def _headers(ctx: RequestContext) -> dict[str, str]:
    return {**ctx.response_headers, "x-request-id": obs.public_id(ctx)}


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; if the client goes away first, cancel it (and so the upstream call)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnectedError("The client closed the connection.")
    return task.result()


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
