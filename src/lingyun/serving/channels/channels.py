"""The channels of one upstream deployment: which one a request goes to, and what to do when
it fails.

Choice: among usable channels (breaker ``closed``, under their RPM/TPM, not yet tried by this
request) the lowest ``priority`` tier wins, and within it a weighted random pick. A failure
that is the channel's (see ``breaker.is_failure``) before any byte reached the client moves the
request to the next usable channel — the rest of its tier first, then the next tier — so a
dead key costs the client nothing. A client's own mistake (400) is returned at once: another
channel would refuse it too.

Self-hosted replicas and channels under one model name: a deployment is either (one name, one
engine). To serve locally and overflow to a cloud, declare the cloud as its own deployment and
list it in the local one's ``fallbacks:`` (gateway/failover.py): local first, always.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from lingyun.config import ChannelConfig
from lingyun.errors import LingyunError, ServiceUnavailableError
from lingyun.gateway.context import RequestContext
from lingyun.serving.channels.breaker import Breaker, ChannelState, Transition, is_failure
from lingyun.serving.replica import Replica

logger = logging.getLogger(__name__)

T = TypeVar("T")
MINUTE_S = 60.0


class ReplicaHolder(Protocol):
    """The pipeline's per-request bookkeeping of which replica it holds."""

    def take_replica(self, replica: Replica) -> None: ...

    def drop_replica(self) -> None: ...


@dataclass(eq=False)
class Channel:
    """One endpoint/key: its replica (``None`` when misconfigured), breaker and statistics."""

    deployment: str
    name: str
    config: ChannelConfig
    breaker: Breaker
    replica: Replica | None = None
    error: str | None = None
    requests: int = 0
    failures: int = 0
    latency_ms: float | None = None
    _minute: deque[tuple[float, int]] = field(default_factory=deque)

    @property
    def state(self) -> ChannelState:
        return self.breaker.state

    def room(self, now: float) -> bool:
        """Under this channel's own RPM and TPM over the last minute?"""
        while self._minute and self._minute[0][0] < now - MINUTE_S:
            self._minute.popleft()
        cfg = self.config
        if cfg.rpm is not None and len(self._minute) >= cfg.rpm:
            return False
        return cfg.tpm is None or sum(t for _, t in self._minute) < cfg.tpm

    def started(self, now: float, tokens: int) -> None:
        self.requests += 1
        self._minute.append((now, tokens))

    def answered(self, ms: float) -> None:
        # An exponentially weighted mean: recent latency matters, one outlier does not.
        self.latency_ms = ms if self.latency_ms is None else 0.8 * self.latency_ms + 0.2 * ms

    def snapshot(self) -> dict[str, object]:
        rate, n = self.breaker.error_rate()
        return {
            "deployment": self.deployment,
            "channel": self.name,
            "state": self.state.value,
            "base_url": self.replica.base_url if self.replica is not None else None,
            "model": self.replica.model_id if self.replica is not None else self.config.model,
            "priority": self.config.priority,
            "weight": self.config.weight,
            "requests": self.requests,
            "failures": self.failures,
            "error_rate": round(rate, 4),
            "window_requests": n,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "last_error": self.error or self.breaker.last_error,
            "transitions": self.breaker.transitions,
        }


class ChannelSet:
    def __init__(
        self, deployment: str, channels: list[Channel], rng: random.Random | None = None
    ) -> None:
        self.deployment = deployment
        self.channels = channels
        self._rng = rng or random.Random()

    def get(self, name: str) -> Channel | None:
        return next((c for c in self.channels if c.name == name), None)

    def pick(self, exclude: set[str] | frozenset[str] = frozenset()) -> Channel:
        now = time.monotonic()
        usable = [
            c
            for c in self.channels
            if c.replica is not None
            and c.state is ChannelState.CLOSED
            and c.name not in exclude
            and c.room(now)
        ]
        if not usable:
            raise ServiceUnavailableError(
                f"Model `{self.deployment}` is temporarily unavailable ({self._why(exclude)}); "
                "retry shortly.",
                headers={"Retry-After": "1"},
            )
        tier = min(c.config.priority for c in usable)
        pool = [c for c in usable if c.config.priority == tier]
        if len(pool) == 1:
            return pool[0]
        return self._rng.choices(pool, weights=[c.config.weight for c in pool])[0]

    def _why(self, exclude: set[str] | frozenset[str]) -> str:
        states = sorted({c.state.value for c in self.channels if c.name not in exclude})
        if not states:
            return "every channel failed for this request"
        return "no usable upstream channel: " + ", ".join(states)

    async def call(
        self,
        ctx: RequestContext,
        holder: ReplicaHolder,
        call: Callable[[RequestContext], Awaitable[T]],
    ) -> T:
        """Send ``ctx`` through a channel, moving to the next one on a channel failure."""
        tried: set[str] = set()
        while True:
            channel = self.pick(tried)
            replica = channel.replica
            assert replica is not None  # pick() returns only channels with a replica
            holder.take_replica(replica)
            began = time.monotonic()
            channel.started(began, ctx.body_bytes // 4 + (ctx.max_output_tokens or 0))
            try:
                result = await call(ctx)
            except LingyunError as err:
                if not is_failure(err):
                    channel.breaker.success()
                    raise
                channel.failures += 1
                channel.breaker.failure(err)
                tried.add(channel.name)
                if not self._another(tried):
                    raise
                logger.warning(
                    "%s: channel %s/%s failed (%s); trying another",
                    ctx.request_id, self.deployment, channel.name, err.code,
                )  # fmt: skip
                holder.drop_replica()
                continue
            channel.breaker.success()
            channel.answered((time.monotonic() - began) * 1000)
            return result

    def _another(self, tried: set[str]) -> bool:
        try:
            self.pick(tried)
        except ServiceUnavailableError:
            return False
        return True


Listener = Callable[[Channel, Transition], None]
