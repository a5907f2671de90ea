"""Who goes next when a slot frees: first come first served, or the Virtual Token Counter.

VTC (Sheng et al., "Fairness in Serving Large Language Models", OSDI 2024) keeps a counter per
tenant of the service it received: ``w_in`` per prompt token when a request is admitted and
``w_out`` per output token as it streams, each divided by the tenant's weight. The next
request comes from the backlogged tenant with the smallest counter; on equal counters, from
the tenant with fewer requests in service, then the earliest request. A tenant that becomes
backlogged has its counter lifted to the smallest among the backlogged tenants (or, with none,
to that of the tenant that left the queue last), so idling earns no credit and a newcomer
cannot monopolise the engine to "catch up". Within a tenant, requests keep their order.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import deque
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class Scheduler(Protocol[T]):
    def push(self, tenant: str, item: T) -> None: ...

    def pop(self) -> tuple[str, T] | None: ...

    def discard(self, tenant: str, item: T) -> None: ...

    def backlogged(self) -> bool: ...

    def charge(self, tenant: str, weight: float, amount: float) -> None: ...

    def started(self, tenant: str) -> None: ...

    def finished(self, tenant: str) -> None: ...


class FcfsScheduler(Generic[T]):
    """Arrival order, whoever sent it."""

    def __init__(self) -> None:
        self._queue: deque[tuple[str, T]] = deque()

    def push(self, tenant: str, item: T) -> None:
        self._queue.append((tenant, item))

    def pop(self) -> tuple[str, T] | None:
        return self._queue.popleft() if self._queue else None

    def discard(self, tenant: str, item: T) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove((tenant, item))

    def backlogged(self) -> bool:
        return bool(self._queue)

    def charge(self, tenant: str, weight: float, amount: float) -> None:
        return None

    def started(self, tenant: str) -> None:
        return None

    def finished(self, tenant: str) -> None:
        return None


class VtcScheduler(Generic[T]):
    """Virtual token counters; see the module docstring."""

    def __init__(self) -> None:
        self.counters: dict[str, float] = {}
        self._queues: dict[str, deque[tuple[int, T]]] = {}
        self._seq = itertools.count()
        self._last_left: str | None = None
        self._in_service: dict[str, int] = {}

    def push(self, tenant: str, item: T) -> None:
        queue = self._queues.get(tenant)
        if queue is None:
            self._lift(tenant)
            queue = self._queues[tenant] = deque()
        queue.append((next(self._seq), item))

    def _lift(self, tenant: str) -> None:
        own = self.counters.get(tenant, 0.0)
        if self._queues:
            floor = min(self.counters.get(t, 0.0) for t in self._queues)
        elif self._last_left is not None:
            floor = self.counters.get(self._last_left, 0.0)
        else:
            floor = own
        self.counters[tenant] = max(own, floor)

    def pop(self) -> tuple[str, T] | None:
        if not self._queues:
            return None
        # Equal counters (a newcomer was just lifted): the tenant using less of the engine now.
        tenant = min(
            self._queues,
            key=lambda t: (
                self.counters.get(t, 0.0),
                self._in_service.get(t, 0),
                self._queues[t][0][0],
            ),
        )
        queue = self._queues[tenant]
        _, item = queue.popleft()
        if not queue:
            self._left(tenant)
        return tenant, item

    def discard(self, tenant: str, item: T) -> None:
        queue = self._queues.get(tenant)
        if queue is None:
            return
        for entry in queue:
            if entry[1] is item:
                queue.remove(entry)
                break
        if not queue:
            self._left(tenant)

    def _left(self, tenant: str) -> None:
        del self._queues[tenant]
        self._last_left = tenant

    def backlogged(self) -> bool:
        return bool(self._queues)

    def charge(self, tenant: str, weight: float, amount: float) -> None:
        self.counters[tenant] = self.counters.get(tenant, 0.0) + amount / max(weight, 1e-9)

    def started(self, tenant: str) -> None:
        self._in_service[tenant] = self._in_service.get(tenant, 0) + 1

    def finished(self, tenant: str) -> None:
        left = self._in_service.get(tenant, 0) - 1
        if left > 0:
            self._in_service[tenant] = left
        else:
            self._in_service.pop(tenant, None)
