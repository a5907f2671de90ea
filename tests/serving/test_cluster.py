"""The coordinator (``serving/cluster.py``): two gateways' supervisors on one database.

In-process, with stand-in replicas and a lease of 0.6 s, so a crashed owner's lease expires
within the test: exactly one side runs the replicas, the other follows the registry, reports
its load to the owner, wakes a deployment at zero, and takes over when the owner dies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from lingyun.serving.autoscale import ScalingTimings
from lingyun.serving.cluster import Coordinator
from lingyun.serving.health import HealthPolicy
from lingyun.serving.local import LocalSupervisor
from lingyun.store.db import Database
from tests.serving.conftest import FAST
from tests.serving.supervisor_standins import StandInEngine, make_dep
from tests.support.databases import fresh_sqlite

pytestmark = pytest.mark.anyio
MakeCoordinator = Callable[[str], Coordinator]


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            if predicate():
                return
            await anyio.sleep(0.02)


@pytest.fixture
async def gateways(tmp_path: Path, anyio_backend: str) -> AsyncIterator[MakeCoordinator]:
    db = Database(fresh_sqlite(tmp_path))
    await db.migrate()
    made: list[Coordinator] = []

    def make(name: str) -> Coordinator:
        inner = LocalSupervisor(
            tmp_path / name,
            engines={"standin": StandInEngine()},
            policy=HealthPolicy(**FAST),
            scaling=ScalingTimings(tick_s=0.05, up_delay_s=0.1, down_delay_s=0.5),
        )
        made.append(Coordinator(inner, db, owner=name, heartbeat_s=0.1, lease_ttl_s=0.6))
        return made[-1]

    yield make
    for coordinator in made:
        await coordinator.stop()
    await db.close()


async def test_one_owner_the_other_follows_then_takes_over(gateways: MakeCoordinator) -> None:
    a, b = gateways("a"), gateways("b")
    dep = make_dep("m", replicas=2)
    await a.start([dep])
    await b.start([dep])
    assert await a.wait_ready("m", 10.0, min_healthy=2)
    assert await b.wait_ready("m", 10.0, min_healthy=2)  # through the registry
    assert b.inner.replicas("m") == ()  # b runs nothing itself
    assert [r.base_url for r in b.replicas("m")] == [r.base_url for r in a.replicas("m")]
    assert [d.healthy_replicas for d in b.status()] == [2]

    # The follower's traffic counts for the owner's autoscaler.
    b.replicas("m")[0].inflight = 3
    await until(lambda: a.inner.remote_load.get("m", (0, 0.0))[0] == 3)
    b.replicas("m")[0].inflight = 0

    # `a` dies without a word: its heartbeat stops (its replicas would die with it).
    assert a._task is not None
    a._task.cancel()
    await a.inner.stop()
    await until(lambda: len(b.inner.replicas("m")) == 2, timeout_s=5.0)
    assert await b.wait_ready("m", 10.0, min_healthy=2)


async def test_follower_wakes_a_deployment_at_zero(gateways: MakeCoordinator) -> None:
    a, b = gateways("a"), gateways("b")
    dep = make_dep("m", replicas=0, min_replicas=0, max_replicas=1, idle_timeout_s=0.5)
    await a.start([dep])
    await b.start([dep])
    await anyio.sleep(0.3)
    assert a.replicas("m") == () and b.replicas("m") == ()
    with anyio.fail_after(10):
        assert await b.activate("m", 10.0)  # the owner (a) starts it for b's request
    assert len(a.inner.replicas("m")) == 1
    assert b.inner.replicas("m") == ()
    await until(lambda: a.replicas("m") == (), timeout_s=5.0)  # idle again: back to zero
