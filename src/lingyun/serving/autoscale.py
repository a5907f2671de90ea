"""How many replicas a deployment should run, from the requests in flight on it.

Shared by the local and Ray supervisors (``serving/pool.py`` drives it): each tick the pool
passes the deployment's load (requests in flight on its replicas, here and, through the
serving registry, on follower gateways) and the time of its last request, and gets back the
replica count it should have. Pure arithmetic over the time it is given, so tests drive it
without sleeping.

Rules, per deployment (``DeploymentConfig``):
- no autoscaling field set: a fixed ``replicas`` count, as before;
- otherwise ``want`` is the largest of what each target set asks for, clamped to
  ``[max(min_replicas, 1), max_replicas]``: ``ceil(load / target_inflight)``; and from the
  engines' own signals, where they export them (``EngineReading``), the usual
  ``ceil(replicas x per-replica mean / target)`` for ``target_queue`` (requests waiting
  inside the engine) and ``target_kv_usage`` (KV-cache usage, 0-1). A target with no
  reading asks for nothing (the count stays). A higher ``want`` is taken once it has held
  for ``scale_up_delay_s`` (a burst of one tick does not start a replica), a lower one after
  ``scale_down_delay_s`` (replicas are slow to start, so keep them through short lulls);
- ``min_replicas: 0``: after ``idle_timeout_s`` with no request at all the count drops to 0;
  ``activate()`` (the gateway's activator, on a request for a deployment at zero) brings it
  back to 1 at once.
The count starts at ``replicas`` clamped to ``[min_replicas, max_replicas]``, so a deployment
declared with ``min_replicas: 0`` is warm after start-up and goes to zero only when idle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lingyun.config import DeploymentConfig

# Scale to zero only after this long idle when ``min_replicas: 0`` gives no idle_timeout_s.
DEFAULT_IDLE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ScalingTimings:
    """How quickly the autoscaler reacts; tests shrink these."""

    tick_s: float = 0.5
    up_delay_s: float = 2.0
    down_delay_s: float = 30.0
    # A replica leaving on scale-down first leaves routing, then gets this long to finish
    # the requests it has before it is stopped.
    drain_timeout_s: float = 30.0


@dataclass(frozen=True)
class EngineReading:
    """A deployment's engine signals: means over the replicas that reported them."""

    replicas: int = 0
    waiting: float = 0.0
    kv_usage: float = 0.0

    @classmethod
    def of(cls, readings: Sequence[Mapping[str, float]]) -> EngineReading:
        n = len(readings)
        if n == 0:
            return cls()
        waiting = sum(r.get("waiting", 0.0) for r in readings) / n
        return cls(n, waiting, sum(r.get("kv_cache_usage", 0.0) for r in readings) / n)


def autoscaled(dep: DeploymentConfig) -> bool:
    return any(
        v is not None
        for v in (
            dep.min_replicas,
            dep.max_replicas,
            dep.target_inflight,
            dep.target_queue,
            dep.target_kv_usage,
            dep.idle_timeout_s,
        )
    )


class Autoscaler:
    """The replica count of one deployment; see the module docstring."""

    def __init__(self, dep: DeploymentConfig, timings: ScalingTimings, now: float) -> None:
        self.up_delay_s = (
            dep.scale_up_delay_s if dep.scale_up_delay_s is not None else timings.up_delay_s
        )
        self.down_delay_s = (
            dep.scale_down_delay_s if dep.scale_down_delay_s is not None else timings.down_delay_s
        )
        if autoscaled(dep):
            self.min = dep.min_replicas if dep.min_replicas is not None else 1
            self.max = (
                dep.max_replicas if dep.max_replicas is not None else max(dep.replicas, self.min)
            )
            if self.min > self.max:
                raise ValueError(
                    f"deployment {dep.name!r}: min_replicas ({self.min}) is above "
                    f"max_replicas ({self.max}); lower min_replicas or raise max_replicas"
                )
        else:
            self.min = self.max = dep.replicas
        self.target = dep.target_inflight
        self.target_queue = dep.target_queue
        self.target_kv = dep.target_kv_usage
        self.idle_timeout_s = dep.idle_timeout_s or DEFAULT_IDLE_TIMEOUT_S
        self.desired = min(max(dep.replicas, self.min), self.max)
        self.last_active = now
        self._want_since: float | None = None
        self._want = self.desired

    def note_activity(self, when: float) -> None:
        self.last_active = max(self.last_active, when)

    def activate(self, now: float) -> int:
        """A request is waiting: at zero, go to one replica now (no delay applies)."""
        self.note_activity(now)
        if self.desired == 0 and self.max > 0:
            self.desired = 1
            self._want_since = None
        return self.desired

    def wanted(self, load: int, engine: EngineReading) -> int | None:
        """What the targets ask for (the largest), or None when none has a reading."""
        wants: list[int] = []
        if self.target is not None:
            wants.append(math.ceil(load / self.target))
        if engine.replicas:
            for target, mean in ((self.target_queue, engine.waiting),
                                 (self.target_kv, engine.kv_usage)):  # fmt: skip
                if target is not None:
                    # a float product such as 0.7 / 0.35 * 2 must not round up past 4
                    wants.append(math.ceil(round(self.desired * mean / target, 9)))
        return max(wants) if wants else None

    def decide(self, now: float, load: int, engine: EngineReading | None = None) -> int:
        """The replica count to run now, given ``load`` requests in flight and the engines'
        signals."""
        if load > 0:
            self.note_activity(now)
        if self.desired == 0:
            return self.activate(now) if load > 0 else 0
        floor = max(self.min, 1)
        want = self.desired
        wanted = self.wanted(load, engine or EngineReading())
        if wanted is not None:
            want = min(max(wanted, floor), self.max)
        if want != self.desired:
            # The delay counts while the wish points the same way (up or down), whatever
            # the exact count; the count taken is the latest.
            if (want > self.desired) != (self._want > self.desired) or self._want_since is None:
                self._want_since = now
            self._want = want
            delay = self.up_delay_s if want > self.desired else self.down_delay_s
            if now - self._want_since >= delay:
                self.desired = want
                self._want_since = None
        else:
            self._want_since = None
        if self.min == 0 and load == 0 and now - self.last_active >= self.idle_timeout_s:
            self.desired = 0
            self._want_since = None
        return self.desired
