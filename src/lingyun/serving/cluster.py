"""Stateless gateways: of several ``lingyun serve`` on one database, one owns each deployment.

``Coordinator`` wraps a supervisor (local or Ray, ``serving/pool.py``) and is what the gateway
sees (the ``Supervisor`` protocol). Every ``HEARTBEAT_S`` it:

1. takes or renews a lease (``store/serving.py``) on each process-engine deployment; the
   deployments it holds are the only ones its supervisor runs, the others it *follows*.
   Upstream-engine deployments need no owner: every gateway calls the upstream itself;
2. as owner, publishes its replicas (id, base URL, health) to ``serving_replicas``, and feeds
   the load that followers report (``serving_load``) to its autoscaler;
3. as follower, reloads the published replicas into ``Replica`` objects it routes to (the same
   object per replica across reloads, so in-flight counts survive), and reports its own load.

A gateway that dies stops renewing; within ``LEASE_TTL_S`` another takes the lease and starts
replicas of its own (a Ray actor or child process dies with the gateway that owned it). A
gateway that stops cleanly releases its leases at once.

Gateways form a group by sharing ``LINGYUN_CLUSTER_SECRET`` (a follower must present the
owner's replica secrets, sealed with it in the registry). Without it there is no group: the
factory runs the supervisor bare, so the gateway owns everything itself and publishes nothing.

Invariant: a gateway's supervisor runs a deployment only while this gateway holds its lease;
if a renewal finds the lease taken (or cannot reach the database past the lease's end), the
deployment's replicas are stopped before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from lingyun.lifecycle import supervised
from lingyun.serving import replica_auth
from lingyun.serving.pool import PooledSupervisor
from lingyun.serving.replica import Replica, wait_healthy
from lingyun.serving.supervisor import DeploymentStatus, ReplicaState, ReplicaStatus
from lingyun.store.models import utcnow
from lingyun.store.serving import ServingLeaseRow, ServingLoadRow, ServingReplicaRow

# What a registry row says of a replica, in the order ``_publish`` snapshots it.
_PUBLISHED = ("deployment", "replica_id", "base_url", "model_id", "healthy", "state",
              "max_inflight", "secret")  # fmt: skip

if TYPE_CHECKING:
    from lingyun.config import DeploymentConfig
    from lingyun.store.db import Database

logger = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
LEASE_TTL_S = 10.0


class Coordinator:
    """The gateway's supervisor when several gateways share a database; see the docstring."""

    def __init__(
        self,
        inner: PooledSupervisor,
        db: Database,
        *,
        owner: str,
        heartbeat_s: float = HEARTBEAT_S,
        lease_ttl_s: float = LEASE_TTL_S,
    ) -> None:
        self.inner = inner
        self.db = db
        self.owner = owner
        self.heartbeat_s = heartbeat_s
        self.lease_ttl = timedelta(seconds=lease_ttl_s)
        self._desired: dict[str, DeploymentConfig] = {}
        self._owned: set[str] = set()
        self._owned_until: datetime | None = None
        self._followed: dict[str, dict[str, Replica]] = {}
        self._waiting: dict[str, int] = {}
        self._foreign: set[tuple[str, str]] = set()  # (deployment, owner) warned about
        # What the registry holds for us, so an unchanged beat writes nothing.
        self._last_published: (
            set[tuple[str, str, str, str, bool, str, int | None, str | None]] | None
        ) = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- the Supervisor protocol ------------------------------------------------------------

    async def start(self, deployments: Sequence[DeploymentConfig]) -> None:
        self._set_desired(deployments)
        await self.inner.start([])
        async with self._lock:
            await self._heartbeat()
        self._task = supervised("coordinator", self._loop)

    async def apply(self, deployments: Sequence[DeploymentConfig]) -> None:
        self._set_desired(deployments)
        async with self._lock:
            await self._heartbeat()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:
            await self.inner.stop()
            try:
                await self._release()
            except Exception:
                logger.exception("could not release serving leases; they expire by themselves")

    def replicas(self, name: str) -> Sequence[Replica]:
        followed = self._followed.get(name)
        if followed is not None:
            return tuple(followed.values())
        return self.inner.replicas(name)

    def status(self) -> list[DeploymentStatus]:
        mine = self.inner.status()
        followed = [
            DeploymentStatus(
                name,
                self._desired[name].engine,
                tuple(
                    ReplicaStatus(
                        replica_id=r.replica_id,
                        state=ReplicaState.HEALTHY if r.healthy else ReplicaState.UNHEALTHY,
                        healthy=r.healthy,
                        base_url=r.base_url,
                    )
                    for r in replicas.values()
                ),
            )
            for name, replicas in self._followed.items()
            if name in self._desired
        ]
        return [*mine, *followed]

    async def activate(self, name: str, timeout_s: float) -> bool:
        if name not in self._followed:
            return await self.inner.activate(name, timeout_s)
        # A follower: count ourselves as a waiting request so the owner scales up from zero.
        self._waiting[name] = self._waiting.get(name, 0) + 1
        try:
            await self._report_load()
            return await self.wait_ready(name, timeout_s)
        finally:
            self._waiting[name] -= 1

    async def wait_ready(self, name: str, timeout_s: float, min_healthy: int = 1) -> bool:
        return await wait_healthy(self, name, timeout_s, min_healthy)

    # -- the heartbeat ----------------------------------------------------------------------

    def _set_desired(self, deployments: Sequence[DeploymentConfig]) -> None:
        names = [d.name for d in deployments]
        if len(set(names)) != len(names):
            raise ValueError(f"a deployment name is declared twice in {names}")
        self._desired = {d.name: d for d in deployments}

    def _needs_owner(self, dep: DeploymentConfig) -> bool:
        return self.inner.runs_processes(dep)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                async with self._lock:
                    await self._heartbeat()
            except Exception:
                logger.exception("serving heartbeat failed; retrying")
                await self._lost_database()

    async def _heartbeat(self) -> None:
        owned = await self._renew_leases()
        # Every beat: apply() is cheap when nothing changed, and picks up changed deployments.
        await self.inner.apply(
            [d for n, d in self._desired.items() if n in owned or not self._needs_owner(d)]
        )
        gained, lost = owned - self._owned, self._owned - owned
        if gained or lost:
            logger.info("serving leases: gained %s, lost %s", sorted(gained), sorted(lost))
        self._owned = owned
        await self._publish()
        await self._follow()
        await self._report_load()

    async def _renew_leases(self) -> set[str]:
        """One conditional UPDATE renews ours and takes expired ones (RETURNING says which);
        an INSERT claims a deployment nobody has leased (or whose owner released it). In the
        steady state that is one statement a beat for an owner, two for a follower."""
        now = utcnow()
        until = now + self.lease_ttl
        wanted = [n for n, d in self._desired.items() if self._needs_owner(d)]
        async with self.db.session() as s:
            owned = set(
                (
                    await s.scalars(
                        update(ServingLeaseRow)
                        .where(
                            ServingLeaseRow.deployment.in_(wanted),
                            or_(
                                ServingLeaseRow.owner == self.owner,
                                ServingLeaseRow.expires_at < now,
                            ),
                        )
                        .values(owner=self.owner, expires_at=until)
                        .returning(ServingLeaseRow.deployment),
                        execution_options={"synchronize_session": False},
                    )
                ).all()
            )
            await s.commit()
            unclaimed = [n for n in wanted if n not in owned]
            if unclaimed:
                taken = set(
                    (
                        await s.scalars(
                            select(ServingLeaseRow.deployment).where(
                                ServingLeaseRow.deployment.in_(unclaimed)
                            )
                        )
                    ).all()
                )
                await s.commit()
                for name in unclaimed:
                    if name in taken:
                        continue
                    s.add(ServingLeaseRow(deployment=name, owner=self.owner, expires_at=until))
                    try:
                        await s.commit()
                        owned.add(name)
                    except IntegrityError:
                        await s.rollback()  # another gateway inserted it first: it owns it
            # Leases of deployments we no longer declare: let someone else have them.
            if self._owned - set(wanted):
                await s.execute(
                    delete(ServingLeaseRow).where(
                        ServingLeaseRow.owner == self.owner,
                        ServingLeaseRow.deployment.not_in(wanted),
                    )
                )
                await s.commit()
        self._owned_until = until
        return owned

    async def _publish(self) -> None:
        now = utcnow()
        snapshot = {
            (name, r.replica_id, r.base_url, r.model_id, r.healthy, state, r.max_inflight,
             replica_auth.secret_of(r.headers))
            for name in self._owned
            for r, state in self._published(name)
        }  # fmt: skip
        if snapshot != self._last_published:
            async with self.db.session() as s:
                await s.execute(
                    delete(ServingReplicaRow).where(
                        or_(
                            ServingReplicaRow.owner == self.owner,
                            ServingReplicaRow.deployment.in_(self._owned),
                        )
                    )
                )
                for published in snapshot:
                    fields = dict(zip(_PUBLISHED, published, strict=True))
                    fields["secret"] = replica_auth.seal(fields["secret"])  # type: ignore[arg-type]
                    s.add(ServingReplicaRow(**fields, owner=self.owner, updated_at=now))
                await s.commit()
            self._last_published = snapshot
        if not self._owned:
            self.inner.remote_load = {}
            return
        # Load that followers report on deployments we own, for our autoscaler.
        since = now - self.lease_ttl
        async with self.db.session() as s:
            rows = (
                await s.scalars(
                    select(ServingLoadRow).where(
                        ServingLoadRow.deployment.in_(self._owned),
                        ServingLoadRow.gateway != self.owner,
                        ServingLoadRow.updated_at >= since,
                    )
                )
            ).all()
        mono, wall = time.monotonic(), now.timestamp()
        remote: dict[str, tuple[int, float]] = {}
        for row in rows:
            inflight, last = remote.get(row.deployment, (0, 0.0))
            row_last = mono - (wall - row.last_active_at.timestamp())
            remote[row.deployment] = (inflight + row.inflight, max(last, row_last))
        self.inner.remote_load = remote

    def _published(self, name: str) -> list[tuple[Replica, str]]:
        states = {
            r.replica_id: r.state.value
            for d in self.inner.status()
            if d.name == name
            for r in d.replicas
        }
        return [(r, states.get(r.replica_id, "starting")) for r in self.inner.replicas(name)]

    async def _follow(self) -> None:
        names = [
            n for n, d in self._desired.items() if self._needs_owner(d) and n not in self._owned
        ]
        now = utcnow()
        async with self.db.session() as s:
            rows = (
                await s.scalars(
                    select(ServingReplicaRow)
                    .join(
                        ServingLeaseRow,
                        and_(
                            ServingLeaseRow.deployment == ServingReplicaRow.deployment,
                            ServingLeaseRow.owner == ServingReplicaRow.owner,
                        ),
                    )
                    .where(
                        ServingReplicaRow.deployment.in_(names),
                        ServingLeaseRow.expires_at > now,
                    )
                    .order_by(ServingReplicaRow.replica_id)
                )
            ).all()
        followed: dict[str, dict[str, Replica]] = {n: {} for n in names}
        for row in rows:
            secret = replica_auth.unseal(row.secret)
            if row.secret is not None and secret is None:  # another group's: it would refuse us
                if (row.deployment, row.owner) not in self._foreign:
                    self._foreign.add((row.deployment, row.owner))
                    logger.warning("replicas of %s are owned by gateway %s, whose %s differs"
                                   " from ours; not routing to them", row.deployment, row.owner,
                                   replica_auth.CLUSTER_SECRET_ENV)  # fmt: skip
                continue
            old = self._followed.get(row.deployment, {}).get(row.replica_id)
            replica = old if old is not None and old.base_url == row.base_url else None
            if replica is None:
                replica = Replica(deployment=row.deployment, replica_id=row.replica_id,
                                  base_url=row.base_url, model_id=row.model_id,
                                  max_inflight=row.max_inflight)  # fmt: skip
            replica.model_id = row.model_id
            replica.healthy = row.healthy
            replica.headers = replica_auth.auth_headers(secret) if secret else {}
            followed[row.deployment][row.replica_id] = replica
        # Replicas that left the registry keep their object out of routing for any stragglers.
        for name, old_replicas in self._followed.items():
            for rid, replica in old_replicas.items():
                if rid not in followed.get(name, {}):
                    replica.healthy = False
        self._followed = followed

    async def _report_load(self) -> None:
        if not self._followed:
            return
        now, mono = utcnow(), time.monotonic()
        async with self.db.session() as s:
            for name, replicas in self._followed.items():
                inflight = sum(r.inflight for r in replicas.values()) + self._waiting.get(name, 0)
                last_used = max((r.last_used for r in replicas.values()), default=0.0)
                if self._waiting.get(name):
                    last_used = mono
                last_active = now - timedelta(seconds=max(mono - last_used, 0.0))
                row = await s.get(ServingLoadRow, (self.owner, name))
                if row is None:
                    s.add(
                        ServingLoadRow(
                            gateway=self.owner,
                            deployment=name,
                            inflight=inflight,
                            last_active_at=last_active,
                            updated_at=now,
                        )
                    )
                else:
                    row.inflight, row.last_active_at, row.updated_at = inflight, last_active, now
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()  # raced with our own other write; the next beat retries

    async def _lost_database(self) -> None:
        """Past our leases' end without a renewal: someone may own them now; stop ours."""
        if self._owned and self._owned_until is not None and utcnow() >= self._owned_until:
            logger.error("serving leases expired without renewal; stopping %s", self._owned)
            self._owned = set()
            await self.inner.apply([d for d in self._desired.values() if not self._needs_owner(d)])

    async def _release(self) -> None:
        async with self.db.session() as s:
            await s.execute(delete(ServingReplicaRow).where(ServingReplicaRow.owner == self.owner))
            await s.execute(delete(ServingLeaseRow).where(ServingLeaseRow.owner == self.owner))
            await s.execute(delete(ServingLoadRow).where(ServingLoadRow.gateway == self.owner))
            await s.commit()
