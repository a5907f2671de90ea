"""The supervisor contract: who starts a deployment's replicas and keeps them routable.

The gateway only needs ``replicas(name)``; it routes to those with ``healthy=True``. A
supervisor owns every ``Replica`` it hands out and is the only writer of ``healthy``,
``base_url`` and ``model_id`` on them (the relay writes ``inflight``). Implementations:
``LocalSupervisor`` (child processes on this machine, ``serving/local.py``) and
``RaySupervisor`` (actors on a Ray cluster, ``serving/ray_supervisor.py``), both built on
``serving/pool.py`` (runners sized by the autoscaler). Both are driven the same way::

    await sup.start(settings.deployments())   # server start-up (lifespan)
    await sup.apply(new_deployments)          # after `lingyun deploy` / admin API changes
    sup.replicas("qwen2.5-7b")                # per request, by the router
    sup.status()                              # /health, admin API, CLI
    await sup.activate("qwen2.5-7b", 30.0)    # activator: scale up from zero, wait for one
    await sup.stop()                          # server shutdown (SIGTERM/SIGINT)

Replica states and who moves them (all moves by the supervisor)::

    starting --/health 200--> healthy --probe failures--> unhealthy --/health 200--> healthy
       |                        |                             |
       +--- exit / ready timeout +-------- process exit -------+--> backoff --> starting
    failed:  the engine refused the deployment's config (no retry until it is re-applied)
    stopped: stop() or the deployment was removed
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lingyun.config import DeploymentConfig
    from lingyun.serving.replica import Replica


class ReplicaState(StrEnum):
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ReplicaStatus:
    """A snapshot of one replica for /health and the admin API (safe to serialise)."""

    replica_id: str
    state: ReplicaState
    healthy: bool
    base_url: str
    pid: int | None = None
    restarts: int = 0
    # Delay before the next restart while in ``backoff``; the last one used otherwise.
    backoff_s: float = 0.0
    last_exit_code: int | None = None
    last_error: str | None = None
    log_path: str | None = None
    # The Ray node the replica runs on (``RaySupervisor``); None for local replicas.
    node_id: str | None = None


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    engine: str
    replicas: tuple[ReplicaStatus, ...]
    # Why the deployment has no replica at all (unknown engine, upstream without API key).
    error: str | None = None

    @property
    def healthy_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.healthy)


class Supervisor(Protocol):
    async def start(self, deployments: Sequence[DeploymentConfig]) -> None:
        """Start serving ``deployments``; returns before replicas are ready (they turn
        healthy in the background; until then the router answers 503)."""
        ...

    async def apply(self, deployments: Sequence[DeploymentConfig]) -> None:
        """Make the running set equal ``deployments`` (the full desired list, by name):
        add new ones, stop removed ones, restart changed ones, leave unchanged ones alone."""
        ...

    async def stop(self) -> None:
        """Stop every replica; no child process outlives this call."""
        ...

    def replicas(self, name: str) -> Sequence[Replica]:
        """The live ``Replica`` objects of deployment ``name`` (empty if unknown); the
        router must check ``healthy`` on each, since it flips at any time."""
        ...

    def status(self) -> list[DeploymentStatus]:
        """A snapshot of every deployment, for /health and the admin API."""
        ...

    async def activate(self, name: str, timeout_s: float) -> bool:
        """Called by the gateway when ``name`` has no healthy replica: scale it up if it is at
        zero and wait until one replica is healthy; False after ``timeout_s`` (503 then)."""
        ...
