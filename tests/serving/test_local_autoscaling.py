"""LocalSupervisor sized by the autoscaler: up under load, down when idle, to zero and back.

Load is what the gateway's relay would write: ``Replica.inflight`` on the supervisor's own
replica objects. Stand-in replica processes (``standin_replica.py``) start in well under a
second, so the whole module takes a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from lingyun.serving.autoscale import ScalingTimings
from lingyun.serving.local import LocalSupervisor
from tests.serving.supervisor_standins import StandInEngine, make_dep, pid_alive

pytestmark = pytest.mark.anyio
Make = Callable[..., LocalSupervisor]
QUICK = ScalingTimings(tick_s=0.05, up_delay_s=0.2, down_delay_s=0.5, drain_timeout_s=5.0)


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            if predicate():
                return
            await anyio.sleep(0.02)


def pids(sup: LocalSupervisor, name: str) -> list[int]:
    return [r.pid for d in sup.status() if d.name == name for r in d.replicas if r.pid]


async def test_scale_from_zero_on_activate(supervisor: Make) -> None:
    sup = supervisor({"standin": StandInEngine()}, scaling=QUICK)
    await sup.start([make_dep("m", replicas=0, min_replicas=0, max_replicas=2)])
    await anyio.sleep(0.3)
    assert sup.replicas("m") == ()  # nothing runs until someone asks
    with anyio.fail_after(10):
        assert await sup.activate("m", 10.0)
    [replica] = sup.replicas("m")
    assert replica.healthy
    assert await sup.activate("m", 0.01)  # already up: no wait
    assert not await sup.activate("unknown", 0.01)


async def test_activate_times_out_when_no_replica_comes(supervisor: Make) -> None:
    never = StandInEngine(flags=["--ready-file", "/nonexistent/never"])
    sup = supervisor({"standin": never}, scaling=QUICK)
    await sup.start([make_dep("m", replicas=0, min_replicas=0, max_replicas=1)])
    assert not await sup.activate("m", 0.5)
    assert len(sup.replicas("m")) == 1  # it is starting, just not ready in time


async def test_scale_up_under_load_and_back_down_when_idle(supervisor: Make) -> None:
    sup = supervisor({"standin": StandInEngine()}, scaling=QUICK)
    await sup.start([make_dep("m", min_replicas=1, max_replicas=3, target_inflight=2)])
    assert await sup.wait_ready("m", 10.0)
    [first] = sup.replicas("m")
    first.inflight = 6  # six requests in flight on one replica, target two per replica
    await until(lambda: len(sup.replicas("m")) == 3)
    assert await sup.wait_ready("m", 10.0, min_healthy=3)
    assert [r.replica_id for r in sup.replicas("m")] == ["m-0", "m-1", "m-2"]
    busy_pids = pids(sup, "m")

    first.inflight = 0  # idle: back to min_replicas after the down delay
    await until(lambda: len(sup.replicas("m")) == 1)
    assert sup.replicas("m") == (first,)  # the busiest/oldest replica is kept
    await until(lambda: sum(pid_alive(p) for p in busy_pids) == 1)  # the others are stopped


async def test_scale_down_drains_a_busy_replica_first(supervisor: Make) -> None:
    sup = supervisor({"standin": StandInEngine()}, scaling=QUICK)
    await sup.start([make_dep("m", replicas=2, min_replicas=1, max_replicas=2, target_inflight=4)])
    assert await sup.wait_ready("m", 10.0, min_healthy=2)
    a, b = sup.replicas("m")
    a.inflight = b.inflight = 1  # two requests streaming: one replica is enough for them
    await until(lambda: len(sup.replicas("m")) == 1)
    assert sup.replicas("m") == (a,)  # equally busy: the newest leaves
    assert not b.healthy  # out of routing at once...
    await anyio.sleep(0.3)
    assert [t.get_name() for t in sup._draining] == ["drain:m-1"]  # ...but still running
    b.inflight = 0  # its request finished: now it is stopped
    await until(lambda: not sup._draining)


async def test_idle_deployment_scales_to_zero_then_comes_back(supervisor: Make) -> None:
    sup = supervisor({"standin": StandInEngine()}, scaling=QUICK)
    await sup.start([make_dep("m", min_replicas=0, max_replicas=1, idle_timeout_s=0.6)])
    assert await sup.wait_ready("m", 10.0)
    [replica] = sup.replicas("m")
    [pid] = pids(sup, "m")
    replica.inflight = 1
    await anyio.sleep(0.8)  # busy past the idle timeout: stays
    assert sup.replicas("m") == (replica,)
    replica.inflight = 0
    await until(lambda: sup.replicas("m") == ())
    await until(lambda: not pid_alive(pid))
    assert await sup.activate("m", 10.0)
    assert len(sup.replicas("m")) == 1
