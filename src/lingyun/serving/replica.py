"""A replica as the gateway sees it: an OpenAI-compatible base URL plus routing state.

Supervisors create replicas and flip ``healthy``; the router reads ``healthy`` and
``inflight``; the relay increments ``inflight`` around each request. All on one event loop,
so plain attributes are enough. Every change of ``inflight`` stamps ``last_used``
(monotonic seconds): the autoscaler's idle clock, which must see even requests that start and
end between two of its ticks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lingyun.engines.dialect import OPENAI_DIALECT, Dialect


@dataclass(eq=False)
class Replica:
    deployment: str
    replica_id: str
    # Base URL ending in /v1; requests go to f"{base_url}/chat/completions" etc.
    base_url: str
    # The "model" value the replica expects (the upstream's id, or the served name).
    model_id: str
    headers: dict[str, str] = field(default_factory=dict)
    dialect: Dialect = OPENAI_DIALECT
    healthy: bool = False
    inflight: int = 0
    # Per-replica capacity for the admission issue; None means unbounded.
    max_inflight: int | None = None
    last_used: float = 0.0
    # Bumped by the supervisor each time the replica's engine (re)starts: its caches start
    # empty, so the router forgets what it thought that replica held.
    generation: int = 0

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "inflight":
            object.__setattr__(self, "last_used", time.monotonic())
        object.__setattr__(self, name, value)


class ReplicaSource(Protocol):
    """Where the gateway and the capacity queue look up a deployment's replicas (a supervisor)."""

    def replicas(self, deployment: str) -> Sequence[Replica]: ...


async def wait_healthy(
    source: ReplicaSource, name: str, timeout_s: float, min_healthy: int = 1
) -> bool:
    """Wait until deployment ``name`` has ``min_healthy`` healthy replicas; False on timeout.
    Health flips on replica objects without an event, so this looks every 50 ms."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while sum(1 for r in source.replicas(name) if r.healthy) < min_healthy:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
