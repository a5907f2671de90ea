"""Stage 4 for real: a per-deployment queue in front of replicas' request slots.

A deployment's capacity is the sum of ``max_inflight`` over its healthy replicas (config
``max_inflight:`` per deployment, per replica). A request takes a slot at once when one is
free and nobody waits; otherwise it waits in the deployment's queue until a slot frees and the
scheduler (``vtc`` by default, or ``fcfs``; see ``vtc.py``) picks it, or until the queue
timeout (``queue_timeout_s``, per deployment or top-level) ends it with a 503 and
``Retry-After``. A deployment with an unbounded replica, or none healthy, is not queued:
routing answers for it as before.

Priority bands: each lane keeps one scheduler per band, served in order: ``interactive``,
``standard``, ``batch`` (``tenancy/priority.py``). A request's band is its key's priority
(else its project's, else standard); a Batch API line (``RequestContext.lane == "batch"``)
is always in the batch band. A freed slot goes to the first backlogged band, and within a
band to the scheduler's pick, so tenants stay fair within each band; the scheduler charges
them in the units they pay for (``units.py``). A request starts at once only when no band
at or above its own is backlogged. A Batch API line waits without the queue timeout (its
batch's window bounds it), so batches fill idle slots and never take one an API request is
waiting for. An API request that times out while higher bands were served ahead of it was
shed for priority: 429 ``shed_for_priority``, saying so (a plain timeout is 503).

Slots are counted here, not read from ``Replica.inflight``: the router's ``CapacityFilter``
then always finds a replica with room for a request this queue let through. Everything runs
on the gateway's event loop, so plain counters are enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from lingyun.admission.policy import estimate_prompt_tokens
from lingyun.admission.units import Rates, rates_for
from lingyun.admission.vtc import FcfsScheduler, Scheduler, VtcScheduler
from lingyun.errors import RateLimitError, ServiceUnavailableError
from lingyun.gateway.context import RequestContext
from lingyun.serving.replica import ReplicaSource
from lingyun.tenancy.priority import DEFAULT_PRIORITY, PRIORITIES

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Waiter:
    ctx: RequestContext
    weight: float
    granted: asyncio.Future[None]


# Bands in the order they are served; an unknown band is served last.
BANDS = PRIORITIES
BATCH = BANDS[-1]


def band_of(ctx: RequestContext) -> str:
    if ctx.lane == BATCH:
        return BATCH
    priority = ctx.key.priority if ctx.key is not None else DEFAULT_PRIORITY
    return priority if priority in BANDS else BATCH


@dataclass(eq=False)
class _Lane:
    """One deployment's slots and queues (one per band)."""

    name: str
    bands: dict[str, Scheduler[_Waiter]]
    active: int = 0
    # Request bytes per prompt token, learnt from engines' counts: the admission estimate
    # must be unbiased, or every release's correction would shift counters the same way.
    bytes_per_token: float = 4.0
    # Set on every release: wakes callers of ``FairQueue.wait_for_room``.
    freed: asyncio.Event = field(default_factory=asyncio.Event)
    # Request ids promised a slot by ``wait_for_room`` that have not acquired it yet.
    promised: set[str] = field(default_factory=set)
    # Slots given per band so far: did a higher band pass a waiter by?
    grants: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANDS, 0))

    @property
    def scheduler(self) -> Scheduler[_Waiter]:
        """The default band's scheduler."""
        return self.bands[DEFAULT_PRIORITY]

    def granted_above(self, band: str) -> int:
        """Slots given so far to the bands served before ``band``."""
        return sum(self.grants[b] for b in BANDS[: BANDS.index(band)])

    def band(self, name: str) -> Scheduler[_Waiter]:
        return self.bands.get(name) or self.bands[BANDS[-1]]

    def backlogged(self, upto: str | None = None) -> bool:
        """Does any band (up to and including ``upto``) have waiters?"""
        for name, scheduler in self.bands.items():
            if scheduler.backlogged():
                return True
            if name == upto:
                return False
        return False

    def pop(self) -> tuple[str, _Waiter] | None:
        for scheduler in self.bands.values():
            if scheduler.backlogged():
                return scheduler.pop()
        return None


@dataclass(eq=False)
class _Held:
    lane: _Lane
    scheduler: Scheduler[_Waiter]
    tenant: str
    weight: float
    prompt_estimate: int
    rates: Rates
    streamed: int = 0


@dataclass
class QueueStats:
    queued: int = 0
    timed_out: int = 0
    shed: int = 0  # of the timed out: passed by higher bands (429)


class FairQueue:
    """A ``CapacityQueue`` (see ``gateway/queue.py``); see the module docstring."""

    def __init__(
        self,
        replicas: ReplicaSource,
        *,
        scheduler: str = "vtc",
        timeout_s: float = 30.0,
        input_weight: float = 1.0,
        output_weight: float = 2.0,
        poll_s: float = 0.5,
        batch_timeout_s: float = 14 * 24 * 3600.0,
    ) -> None:
        if scheduler not in _SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(_SCHEDULERS)}, not {scheduler!r}")
        self.replicas = replicas
        self.scheduler = scheduler
        self.timeout_s = timeout_s
        self.w_in = input_weight
        self.w_out = output_weight
        # How often a waiter looks again without a release (replicas may come and go).
        self.poll_s = poll_s
        # A batch line waits for a slot at most this long (its batch's window ends sooner).
        self.batch_timeout_s = batch_timeout_s
        self._lanes: dict[str, _Lane] = {}
        self._held: dict[str, _Held] = {}
        self.stats = QueueStats()

    def capacity(self, deployment: str) -> int | None:
        """Request slots of the healthy replicas; None means "do not queue"."""
        total = 0
        for replica in self.replicas.replicas(deployment):
            if not replica.healthy:
                continue
            if replica.max_inflight is None:
                return None
            total += replica.max_inflight
        return total or None

    def lane(self, deployment: str) -> _Lane:
        lane = self._lanes.get(deployment)
        if lane is None:
            bands = {band: _SCHEDULERS[self.scheduler]() for band in BANDS}
            lane = self._lanes[deployment] = _Lane(deployment, bands)
        return lane

    async def acquire(self, ctx: RequestContext) -> None:
        dep, key = ctx.deployment, ctx.key
        if dep is None or key is None:
            return
        capacity = self.capacity(dep.name)
        if capacity is None:
            return
        lane = self.lane(dep.name)
        name = band_of(ctx)
        band = lane.band(name)
        lane.promised.discard(ctx.request_id)
        # Slots promised to other batch lines are theirs, unless the request is an API one.
        taken = lane.active + (len(lane.promised) if ctx.lane == BATCH else 0)
        if taken < capacity and not lane.backlogged(upto=name):
            self._start(lane, ctx, key.tenant_id, key.tenant_weight)
            return
        waiter = _Waiter(ctx, key.tenant_weight, asyncio.get_running_loop().create_future())
        band.push(key.tenant_id, waiter)
        self.stats.queued += 1
        passed_by = lane.granted_above(name)
        timeout = dep.queue_timeout_s if dep.queue_timeout_s is not None else self.timeout_s
        if ctx.lane == BATCH:
            timeout = self.batch_timeout_s
        granted = False
        try:
            granted = await self._wait(lane, waiter, wait_s=timeout)
        finally:
            if not granted:
                if waiter.granted.done() and not waiter.granted.cancelled():
                    self.release(ctx)  # a slot was given just as the client went away
                else:
                    waiter.granted.cancel()
                    band.discard(key.tenant_id, waiter)
        if not granted:
            self.stats.timed_out += 1
            if lane.granted_above(name) > passed_by:
                self.stats.shed += 1
                raise RateLimitError(
                    f"Model `{ctx.model}` is at capacity and served requests of higher "
                    f"priority than this key's ({name}) for the {timeout:g}s this request "
                    "waited; it was shed. Retry later, or ask for a higher priority.",
                    code="shed_for_priority",
                    headers={"Retry-After": "1"},
                )
            raise ServiceUnavailableError(
                f"Model `{ctx.model}` is at capacity and the request waited {timeout:g}s in "
                "its queue; retry shortly.",
                headers={"Retry-After": "1"},
            )

    async def wait_for_room(self, deployment: str, request_id: str) -> None:
        """Return once a slot is free, nobody waits and no other caller was promised it;
        the slot is then promised to ``request_id`` until it acquires (or ``forget_room``).
        The batch runner waits here before a line enters the pipeline, so a line reserves
        money only when it is about to run, not while it queues (and a crash never charges
        a line that was only waiting)."""
        while True:
            capacity = self.capacity(deployment)
            lane = self.lane(deployment)
            if capacity is None:
                return
            if lane.active + len(lane.promised) < capacity and not lane.backlogged():
                lane.promised.add(request_id)
                return
            lane.freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.freed.wait(), self.poll_s)

    def forget_room(self, deployment: str, request_id: str) -> None:
        lane = self._lanes.get(deployment)
        if lane is not None and request_id in lane.promised:
            lane.promised.discard(request_id)
            lane.freed.set()

    async def _wait(self, lane: _Lane, waiter: _Waiter, *, wait_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            self._dispatch(lane)
            if waiter.granted.done():
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait({waiter.granted}, timeout=min(left, self.poll_s))

    def release(self, ctx: RequestContext) -> None:
        held = self._held.pop(ctx.request_id, None)
        if held is None:
            return
        held.lane.active -= 1
        held.lane.freed.set()
        held.scheduler.finished(held.tenant)
        usage = ctx.usage
        if usage.reported:  # settle the estimate against the engine's counts
            if usage.prompt_tokens > 0 and ctx.body_bytes > 0:
                seen = ctx.body_bytes / usage.prompt_tokens
                held.lane.bytes_per_token += 0.1 * (seen - held.lane.bytes_per_token)
            charged = held.rates.input * held.prompt_estimate + held.rates.output * held.streamed
            held.scheduler.charge(held.tenant, held.weight, held.rates.cost(usage) - charged)
        self._dispatch(held.lane)

    def _start(self, lane: _Lane, ctx: RequestContext, tenant: str, weight: float) -> None:
        lane.active += 1
        if ctx.body_bytes > 0:
            prompt = max(1, round(ctx.body_bytes / lane.bytes_per_token))
        else:
            prompt = estimate_prompt_tokens(ctx)
        band = band_of(ctx)
        lane.grants[band] = lane.grants.get(band, 0) + 1
        scheduler = lane.band(band)
        rates = rates_for(ctx, self.w_in, self.w_out)
        held = self._held[ctx.request_id] = _Held(lane, scheduler, tenant, weight, prompt, rates)
        scheduler.charge(tenant, weight, rates.input * prompt)
        scheduler.started(tenant)
        ctx.token_hooks.append(functools.partial(self._streamed, held))

    def _streamed(self, held: _Held, tokens: int) -> None:
        held.streamed += tokens
        held.scheduler.charge(held.tenant, held.weight, held.rates.output * tokens)

    def _dispatch(self, lane: _Lane) -> None:
        capacity = self.capacity(lane.name)
        while lane.backlogged() and (capacity is None or lane.active < capacity):
            picked = lane.pop()
            if picked is None:
                break
            tenant, waiter = picked
            if waiter.granted.done():
                continue  # gave up meanwhile
            self._start(lane, waiter.ctx, tenant, waiter.weight)
            waiter.granted.set_result(None)


_SCHEDULERS: dict[str, Callable[[], Scheduler[_Waiter]]] = {
    "vtc": VtcScheduler[_Waiter],
    "fcfs": FcfsScheduler[_Waiter],
}
