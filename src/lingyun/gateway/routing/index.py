"""Which replica probably holds which prompt blocks in its engine's prefix cache.

The gateway cannot see engines' caches, so it remembers what it sent where: a request's
blocks are inserted for its replica at dispatch (the engine caches them while prefilling).
Per replica an LRU bounded by ``capacity_blocks`` mirrors the engine's own eviction, roughly;
a reverse map (block -> replicas) answers lookups. A replica's entries are dropped when it
restarts (its cache is empty): each replica's *incarnation* (object, generation, address) is
remembered, and a different one seen at lookup wipes the old entries first.

One index per deployment, in this gateway's memory, on the event loop (no locks). Several
gateways each learn from their own traffic; see docs/routing.md for sharing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from lingyun.gateway.routing.prompt import BlockHash
from lingyun.serving.replica import Replica

Incarnation = tuple[int, int, str]


def incarnation(replica: Replica) -> Incarnation:
    return (id(replica), replica.generation, replica.base_url)


class PrefixIndex:
    """replica -> LRU of block hashes, and block -> replicas; see the module docstring."""

    def __init__(self, capacity_blocks: int) -> None:
        if capacity_blocks < 1:
            raise ValueError("routing_options.index_blocks must be at least 1.")
        self.capacity_blocks = capacity_blocks
        self._blocks: dict[str, OrderedDict[BlockHash, None]] = {}
        self._owners: dict[BlockHash, set[str]] = {}
        self._seen: dict[str, Incarnation] = {}

    def blocks_of(self, replica_id: str) -> int:
        return len(self._blocks.get(replica_id, ()))

    def sync(self, replicas: Iterable[Replica]) -> None:
        """Forget what restarted replicas held (called before every lookup)."""
        for r in replicas:
            now = incarnation(r)
            before = self._seen.get(r.replica_id)
            if before != now:
                if before is not None:
                    self.drop(r.replica_id)
                self._seen[r.replica_id] = now

    def drop(self, replica_id: str) -> None:
        for h in self._blocks.pop(replica_id, OrderedDict()):
            owners = self._owners.get(h)
            if owners is not None:
                owners.discard(replica_id)
                if not owners:
                    del self._owners[h]

    def match(self, hashes: Sequence[BlockHash], replica_ids: Iterable[str]) -> dict[str, int]:
        """Per replica, how many leading blocks of ``hashes`` it holds."""
        alive = set(replica_ids)
        counts = dict.fromkeys(alive, 0)
        for h in hashes:
            alive &= self._owners.get(h, set())
            if not alive:
                break
            for r in alive:
                counts[r] += 1
        return counts

    def insert(self, replica_id: str, hashes: Sequence[BlockHash]) -> None:
        """``replica_id`` is about to prefill these blocks: most recent first to be kept."""
        lru = self._blocks.setdefault(replica_id, OrderedDict())
        for h in hashes:
            if h in lru:
                lru.move_to_end(h)
            else:
                lru[h] = None
                self._owners.setdefault(h, set()).add(replica_id)
        while len(lru) > self.capacity_blocks:
            old, _ = lru.popitem(last=False)
            owners = self._owners[old]
            owners.discard(replica_id)
            if not owners:
                del self._owners[old]
