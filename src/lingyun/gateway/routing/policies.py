"""Routing policies of a deployment (``routing:`` in its config), over healthy replicas.

- ``least-inflight``: the replica with the least load (requests in flight from this gateway).
- ``prefix``: the replica whose engine most likely holds the longest prefix of this prompt
  (``index.py``), ties to the least loaded; the request's blocks are then recorded for it.
- ``session``: the replica that served this session before (``X-Session-ID`` header, else the
  body's ``user``), per tenant; a new session goes to the least loaded and sticks.

Affinity must never build a hot spot (prefix routing without a guard completed only 55% of
requests in llm-d's measurements), so both affinity policies first pass the replicas through
``LoadGuardFilter``: a replica loaded more than ``imbalance_abs`` above the least loaded one,
and more than ``imbalance_ratio`` times it, is out of the running for this request. Affinity
then picks among the rest, so a hot prefix spills onto the next replica, which soon holds it
too. The guard can be switched off (``load_guard: false``), for comparison only.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lingyun.config import RoutingOptions
from lingyun.gateway.routing.index import Incarnation, PrefixIndex, incarnation
from lingyun.gateway.routing.prompt import BlockHash
from lingyun.serving.replica import Replica

logger = logging.getLogger(__name__)

Load = Callable[[Replica], float]


def inflight(replica: Replica) -> float:
    return float(replica.inflight)


@dataclass
class RoutingRequest:
    """What a policy may know about a request; hashing is done once, on first use."""

    session_key: str | None
    _hashes: Callable[[], list[BlockHash]]
    _cached: list[BlockHash] | None = field(default=None, init=False)

    @property
    def hashes(self) -> list[BlockHash]:
        if self._cached is None:
            self._cached = self._hashes()
        return self._cached


@dataclass(frozen=True)
class Choice:
    replica: Replica
    reason: str


class Policy(Protocol):
    name: str

    def choose(self, request: RoutingRequest, replicas: Sequence[Replica]) -> Choice: ...


class LoadGuardFilter:
    """Drops hot spots: see the module docstring. The least loaded replica always survives."""

    reason = "hot spot"

    def __init__(self, options: RoutingOptions, load: Load) -> None:
        self.abs = options.imbalance_abs
        self.ratio = options.imbalance_ratio
        self.load = load

    def apply(self, replicas: Sequence[Replica]) -> list[Replica]:
        loads = [self.load(r) for r in replicas]
        low = min(loads)
        return [
            r
            for r, x in zip(replicas, loads, strict=True)
            if not (x - low > self.abs and x > self.ratio * low)
        ]


def least_loaded(replicas: Sequence[Replica], load: Load) -> Replica:
    return min(replicas, key=load)


class LeastInflightPolicy:
    name = "least-inflight"

    def __init__(self, load: Load = inflight) -> None:
        self.load = load

    def choose(self, request: RoutingRequest, replicas: Sequence[Replica]) -> Choice:
        return Choice(least_loaded(replicas, self.load), "least loaded")


class PrefixPolicy:
    name = "prefix"

    def __init__(self, options: RoutingOptions, load: Load = inflight) -> None:
        self.index = PrefixIndex(options.index_blocks)
        self.guard = LoadGuardFilter(options, load) if options.load_guard else None
        self.load = load

    def choose(self, request: RoutingRequest, replicas: Sequence[Replica]) -> Choice:
        self.index.sync(replicas)
        pool = self.guard.apply(replicas) if self.guard is not None else list(replicas)
        hashes = request.hashes
        counts = self.index.match(hashes, (r.replica_id for r in pool))
        best = max(pool, key=lambda r: (counts[r.replica_id], -self.load(r)))
        self.index.insert(best.replica_id, hashes)
        matched = counts[best.replica_id]
        guarded = len(pool) < len(replicas)
        reason = f"prefix {matched}/{len(hashes)} blocks" + (" (hot spots skipped)" * guarded)
        return Choice(best, reason)


class SessionTable:
    """session key -> (replica id, its incarnation), LRU-bounded."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[str, Incarnation]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> tuple[str, Incarnation] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, replica: Replica) -> None:
        self._entries[key] = (replica.replica_id, incarnation(replica))
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


class SessionPolicy:
    name = "session"

    def __init__(self, options: RoutingOptions, load: Load = inflight) -> None:
        self.sessions = SessionTable(options.sessions)
        self.guard = LoadGuardFilter(options, load) if options.load_guard else None
        self.load = load

    def choose(self, request: RoutingRequest, replicas: Sequence[Replica]) -> Choice:
        key = request.session_key
        if key is None:
            return Choice(least_loaded(replicas, self.load), "no session: least loaded")
        pool = self.guard.apply(replicas) if self.guard is not None else list(replicas)
        entry = self.sessions.get(key)
        if entry is not None:
            for r in pool:
                # a restarted replica lost the session's cache: place the session afresh
                if r.replica_id == entry[0] and incarnation(r) == entry[1]:
                    return Choice(r, "session")
        chosen = least_loaded(pool, self.load)
        self.sessions.put(key, chosen)
        return Choice(chosen, "new session" if entry is None else "session moved")


POLICIES: dict[str, Callable[[RoutingOptions, Load], Policy]] = {
    "least-inflight": lambda _options, load: LeastInflightPolicy(load),
    "prefix": PrefixPolicy,
    "session": SessionPolicy,
}
