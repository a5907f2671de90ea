"""What every supervisor shares: deployments as pools of replica runners, sized by the autoscaler.

``PooledSupervisor`` implements the ``Supervisor`` protocol (``serving/supervisor.py``) over
*runners*: one runner keeps one replica alive wherever it lives (a child process for
``LocalSupervisor``, a Ray actor for ``RaySupervisor``); subclasses only say how to make one
(``_new_runner``). Upstream-engine deployments get one always-healthy ``Replica`` and no
runner, the same under every supervisor.

Sizing: a tick every ``ScalingTimings.tick_s`` asks each deployment's ``Autoscaler`` for a
count and adds or removes runners to match. A runner leaving on scale-down is *drained*: out of
routing at once, stopped once its requests finished (or after ``drain_timeout_s``), so scaling
down never cuts a stream. ``activate()`` is the gateway's activator for deployments at zero.

Invariants: only the event loop touches this state (no threads); ``apply``/``stop`` hold the
lock, the tick never awaits while holding deployment state half-changed; every runner made is
stopped by ``stop()``, drained ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeGuard

from lingyun.engines.upstream.outbound import redact_url
from lingyun.serving.autoscale import Autoscaler, EngineReading, ScalingTimings
from lingyun.serving.replica import Replica, wait_healthy
from lingyun.serving.supervisor import DeploymentStatus, ReplicaState, ReplicaStatus

if TYPE_CHECKING:
    from lingyun.config import DeploymentConfig
    from lingyun.engines.base import ProcessEngine, UpstreamEngine

    Engine = ProcessEngine | UpstreamEngine

logger = logging.getLogger(__name__)


class Runner(Protocol):
    """Keeps one replica alive until ``stop()``; never routable while ``draining``."""

    replica: Replica
    draining: bool

    def status(self) -> ReplicaStatus: ...

    async def stop(self) -> None: ...


class RunnerBase:
    """What every runner keeps about its replica; subclasses start and watch it."""

    def __init__(self, dep: DeploymentConfig, n: int) -> None:
        self.replica = Replica(
            deployment=dep.name,
            replica_id=f"{dep.name}-{n}",
            base_url="",
            model_id=dep.name,
            max_inflight=dep.max_inflight,
        )
        self.state = ReplicaState.STARTING
        # Set by the pool on scale-down: out of routing for good, whatever probes say.
        self.draining = False
        self.restarts = 0
        self.backoff_s = 0.0
        self.last_exit_code: int | None = None
        self.last_error: str | None = None
        self._stopping = False

    def _status(
        self, pid: int | None, log_path: str | None, node_id: str | None = None
    ) -> ReplicaStatus:
        return ReplicaStatus(
            replica_id=self.replica.replica_id,
            state=self.state,
            healthy=self.replica.healthy,
            base_url=self.replica.base_url,
            pid=pid,
            restarts=self.restarts,
            backoff_s=self.backoff_s,
            last_exit_code=self.last_exit_code,
            last_error=self.last_error,
            log_path=log_path,
            node_id=node_id,
        )


def is_process_engine(engine: object) -> TypeGuard[ProcessEngine]:
    return callable(getattr(engine, "process", None))


def is_upstream_engine(engine: object) -> TypeGuard[UpstreamEngine]:
    return callable(getattr(engine, "upstream", None))


class PooledDeployment:
    def __init__(self, dep: DeploymentConfig, scaler: Autoscaler | None) -> None:
        self.dep = dep
        self.scaler = scaler
        self.engine: ProcessEngine | None = None
        self.runners: list[Runner] = []
        self.upstream: Replica | None = None
        self.error: str | None = None

    def replicas(self) -> tuple[Replica, ...]:
        if self.upstream is not None:
            return (self.upstream,)
        return tuple(r.replica for r in self.runners)

    def load(self) -> tuple[int, float]:
        """Requests in flight on our replicas, and when one last started or ended."""
        replicas = self.replicas()
        return sum(r.inflight for r in replicas), max((r.last_used for r in replicas), default=0)

    def status(self) -> DeploymentStatus:
        if self.upstream is not None:
            up = self.upstream
            replicas: tuple[ReplicaStatus, ...] = (
                ReplicaStatus(
                    replica_id=up.replica_id,
                    state=ReplicaState.HEALTHY if up.healthy else ReplicaState.UNHEALTHY,
                    healthy=up.healthy,
                    base_url=up.base_url,
                ),
            )
        else:
            replicas = tuple(r.status() for r in self.runners)
        return DeploymentStatus(self.dep.name, self.dep.engine, replicas, self.error)


class PooledSupervisor:
    """Base of ``LocalSupervisor`` and ``RaySupervisor``; see the module docstring."""

    def __init__(
        self, *, engines: Mapping[str, Engine] | None, scaling: ScalingTimings | None
    ) -> None:
        self.scaling = scaling or ScalingTimings()
        self._engines = engines
        self._deployments: dict[str, PooledDeployment] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self._scale_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # Load reported by follower gateways (``serving/cluster.py``): name -> (inflight, last).
        self.remote_load: dict[str, tuple[int, float]] = {}
        # Engine signals per deployment (the replica scraper's ``of``), set when it runs.
        self.signals: Callable[[str], Sequence[Mapping[str, float]]] | None = None

    # -- what subclasses provide ------------------------------------------------------------

    def _new_runner(self, dep: DeploymentConfig, engine: ProcessEngine, n: int) -> Runner:
        raise NotImplementedError

    async def _open(self) -> None:
        """Acquire what runners need (an HTTP client, a cluster connection)."""

    async def _close(self) -> None:
        """Release what ``_open`` acquired, after every runner stopped."""

    # -- the Supervisor protocol ------------------------------------------------------------

    def _engine(self, name: str) -> Engine | None:
        if self._engines is None:
            from lingyun.engines.registry import ENGINES

            self._engines = ENGINES
        return self._engines.get(name)

    def runs_processes(self, dep: DeploymentConfig) -> bool:
        """True when ``dep``'s replicas are ours to run (not an upstream endpoint)."""
        return is_process_engine(self._engine(dep.engine))

    async def start(self, deployments: Sequence[DeploymentConfig]) -> None:
        if self._scale_task is None:
            await self._open()
            self._scale_task = asyncio.get_running_loop().create_task(
                self._scale_loop(), name="autoscaler"
            )
        await self.apply(deployments)

    async def apply(self, deployments: Sequence[DeploymentConfig]) -> None:
        desired: dict[str, DeploymentConfig] = {}
        for dep in deployments:
            if dep.name in desired:
                raise ValueError(f"deployment name {dep.name!r} is declared twice")
            desired[dep.name] = dep
        async with self._lock:
            if self._scale_task is None:
                raise RuntimeError("call start() before apply()")
            stale = [
                name
                for name, current in self._deployments.items()
                if name not in desired or current.dep != desired[name]
            ]
            await asyncio.gather(*(self._remove(name) for name in stale))
            for name, dep in desired.items():
                if name not in self._deployments:
                    self._deployments[name] = self._add(dep)

    async def stop(self) -> None:
        async with self._lock:
            if self._scale_task is not None:
                self._scale_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._scale_task
            await asyncio.gather(*(self._remove(name) for name in list(self._deployments)))
            if self._draining:
                await asyncio.wait(self._draining)
            if self._scale_task is not None:
                self._scale_task = None
                await self._close()

    def replicas(self, name: str) -> Sequence[Replica]:
        deployment = self._deployments.get(name)
        return deployment.replicas() if deployment is not None else ()

    def status(self) -> list[DeploymentStatus]:
        return [d.status() for d in self._deployments.values()]

    async def wait_ready(self, name: str, timeout_s: float, min_healthy: int = 1) -> bool:
        """Wait until ``name`` has ``min_healthy`` healthy replicas; False on timeout.
        For the CLI (``serve --wait``), the activator and tests."""
        return await wait_healthy(self, name, timeout_s, min_healthy)

    async def activate(self, name: str, timeout_s: float) -> bool:
        """The activator: a request waits for deployment ``name``. Scale it up from zero if it
        is there, and wait until a replica is healthy; False if none is within ``timeout_s``
        (the gateway then answers 503 with Retry-After) or the deployment is unknown."""
        deployment = self._deployments.get(name)
        if deployment is None or deployment.error is not None:
            return False  # unknown, or misconfigured (no key, say): no replica is coming
        if any(r.healthy for r in deployment.replicas()):
            return True
        if deployment.scaler is not None:
            deployment.scaler.activate(time.monotonic())
            self._rescale(deployment)
        return await self.wait_ready(name, timeout_s)

    # -- sizing -----------------------------------------------------------------------------

    def _add(self, dep: DeploymentConfig) -> PooledDeployment:
        engine = self._engine(dep.engine)
        if engine is not None and is_process_engine(engine):
            deployment = PooledDeployment(dep, Autoscaler(dep, self.scaling, time.monotonic()))
            deployment.engine = engine
            self._rescale(deployment)
            logger.info("deployment %s: starting %s replica(s)", dep.name, len(deployment.runners))
            return deployment
        deployment = PooledDeployment(dep, None)
        if dep.channels:
            return deployment  # routed by serving/channels, not as a replica
        if engine is not None and is_upstream_engine(engine):
            try:
                spec = engine.upstream(dep)
            except ValueError as exc:
                # E.g. the API key variable is unset: serve everything else, 503 this one.
                deployment.error = str(exc)
                logger.error("deployment %s has no replica: %s", dep.name, exc)
                return deployment
            deployment.upstream = Replica(
                deployment=dep.name,
                replica_id=f"{dep.name}-upstream",
                base_url=spec.base_url,
                model_id=spec.model_id,
                headers=dict(spec.headers),
                dialect=spec.dialect,
                healthy=True,
                max_inflight=dep.max_inflight,
            )
            logger.info("deployment %s: upstream %s", dep.name, redact_url(spec.base_url))
        else:
            deployment.error = f"unknown engine {dep.engine!r}"
            logger.error("deployment %s has no replica: %s", dep.name, deployment.error)
        return deployment

    async def _remove(self, name: str) -> None:
        deployment = self._deployments.pop(name)
        await asyncio.gather(*(r.stop() for r in deployment.runners))
        deployment.runners = []
        if deployment.upstream is not None:
            deployment.upstream.healthy = False
        logger.info("deployment %s stopped", name)

    async def _scale_loop(self) -> None:
        while True:
            await asyncio.sleep(self.scaling.tick_s)
            now = time.monotonic()
            for deployment in list(self._deployments.values()):
                scaler = deployment.scaler
                if scaler is None:
                    continue
                load, last_used = deployment.load()
                remote, remote_last = self.remote_load.get(deployment.dep.name, (0, 0.0))
                scaler.note_activity(max(last_used, remote_last))
                before = len(deployment.runners)
                readings = self.signals(deployment.dep.name) if self.signals else ()
                scaler.decide(now, load + remote, EngineReading.of(readings))
                self._rescale(deployment)
                if len(deployment.runners) != before:
                    logger.info(
                        "deployment %s: %s -> %s replica(s) (%s request(s) in flight)",
                        deployment.dep.name, before, len(deployment.runners), load + remote,
                    )  # fmt: skip

    def _rescale(self, deployment: PooledDeployment) -> None:
        """Add or drain runners until the pool has the autoscaler's count."""
        scaler, engine = deployment.scaler, deployment.engine
        if scaler is None or engine is None:
            return
        runners = deployment.runners
        while len(runners) < scaler.desired:
            used = {_index(r) for r in runners} | {
                int(t.get_name().rsplit("-", 1)[1]) for t in self._draining
                if t.get_name().startswith(f"drain:{deployment.dep.name}-")
            }  # fmt: skip
            n = next(i for i in range(len(used) + 1) if i not in used)
            runners.append(self._new_runner(deployment.dep, engine, n))
        while len(runners) > scaler.desired:
            # Leave the least useful first: not serving yet, then the least busy, newest.
            victim = min(runners, key=lambda r: (r.replica.healthy, r.replica.inflight, -_index(r)))
            runners.remove(victim)
            self._drain(victim)

    def _drain(self, runner: Runner) -> None:
        runner.draining = True
        runner.replica.healthy = False
        task = asyncio.get_running_loop().create_task(
            self._drain_then_stop(runner), name=f"drain:{runner.replica.replica_id}"
        )
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _drain_then_stop(self, runner: Runner) -> None:
        deadline = time.monotonic() + self.scaling.drain_timeout_s
        while runner.replica.inflight > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # the relay decrements inflight; no event to wait on
        await runner.stop()
        logger.info("replica %s stopped (scaled down)", runner.replica.replica_id)


def _index(runner: Runner) -> int:
    return int(runner.replica.replica_id.rsplit("-", 1)[1])
