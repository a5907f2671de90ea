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

A prompt that no replica holds goes to the least loaded replica, or, with ``placement:
consistent-hash`` (several gateways, each with its own index), to the replica that its
leading blocks hash to by rendezvous hashing over the guarded replicas (the chain's hash at
block ``placement_blocks``, or the last one wholly inside the prompt's head, so that every
turn of a conversation hashes alike, but at least the first block): every
gateway then places a new system prompt on the same replica, and each one's index learns the
same placement from its own traffic without sharing state.
"""

from __future__ import annotations

import hashlib
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
    """What a policy may know about a request; hashing is done once, on first use. The
    prompt gives its block hashes and how many of them lie wholly in its head (tools and
    first message: what later turns of a conversation never change)."""

    session_key: str | None
    _prompt: Callable[[], tuple[list[BlockHash], int]]
    _cached: tuple[list[BlockHash], int] | None = field(default=None, init=False)

    @property
    def hashes(self) -> list[BlockHash]:
        return self._hashed()[0]

    @property
    def head_blocks(self) -> int:
        return self._hashed()[1]

    def _hashed(self) -> tuple[list[BlockHash], int]:
        if self._cached is None:
            self._cached = self._prompt()
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
        hashed = options.placement == "consistent-hash"
        self.placement_blocks = options.placement_blocks if hashed else 0

    def choose(self, request: RoutingRequest, replicas: Sequence[Replica]) -> Choice:
        self.index.sync(replicas)
        pool = self.guard.apply(replicas) if self.guard is not None else list(replicas)
        hashes = request.hashes
        counts = self.index.match(hashes, (r.replica_id for r in pool))
        best = max(pool, key=lambda r: (counts[r.replica_id], -self.load(r)))
        if counts[best.replica_id] == 0 and self.placement_blocks and hashes:
            # a block every turn of the conversation shares: within its head, or the first
            block = max(1, min(self.placement_blocks, request.head_blocks))
            best = rendezvous(hashes[block - 1], pool)
        self.index.insert(best.replica_id, hashes)
        matched = counts[best.replica_id]
        guarded = len(pool) < len(replicas)
        reason = f"prefix {matched}/{len(hashes)} blocks" + (" (hot spots skipped)" * guarded)
        return Choice(best, reason)


def rendezvous(key: BlockHash, replicas: Sequence[Replica]) -> Replica:
    """The replica with the highest hash of (key, replica id): stable across gateways, and
    when a replica leaves only its own keys move."""
    return max(
        replicas,
        key=lambda r: hashlib.blake2b(key + r.replica_id.encode(), digest_size=8).digest(),
    )


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
