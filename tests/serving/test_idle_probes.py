"""An idle replica is probed and scraped less; one in use (or failing) as often as before."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from lingyun.observability.replica_signals import ReplicaScraper, Signals
from lingyun.serving import health
from lingyun.serving.health import HealthPolicy, watch
from lingyun.serving.replica import Replica

pytestmark = pytest.mark.anyio


class Counted:
    """A replica's activity whose every look by ``watch`` is counted: its beats."""

    def __init__(self, beats: int) -> None:
        self.looks = 0
        self.busy = 0
        self.last_used = 0.0
        self.beaten = asyncio.Event()  # set after ``beats`` looks
        self._beats = beats

    @property
    def inflight(self) -> int:
        self.looks += 1
        if self.looks >= self._beats:
            self.beaten.set()
        return self.busy


async def test_an_idle_replica_is_not_probed_until_used(monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[bool] = []
    probed, unhealthy = asyncio.Event(), asyncio.Event()
    answer = True

    async def fake_probe(*_args: Any) -> bool:
        probes.append(answer)
        probed.set()
        return answer

    def set_healthy(ok: bool) -> None:
        if not ok:
            unhealthy.set()

    monkeypatch.setattr(health, "probe", fake_probe)
    activity = Counted(beats=50)
    policy = HealthPolicy(interval_s=0.001, idle_interval_s=3600, failure_threshold=1)
    task = asyncio.create_task(
        watch(None, "u", policy, "r", set_healthy, None, activity)  # type: ignore[arg-type]
    )
    try:
        with anyio.fail_after(10):
            await activity.beaten.wait()  # fifty beats of an idle replica
            assert probes == []
            activity.busy = 1  # a request in flight: probed at the next beat
            await probed.wait()
            answer = False  # and a failing one leaves routing as before
            await unhealthy.wait()
    finally:
        task.cancel()


async def test_an_idle_replica_keeps_its_reading_unscraped() -> None:
    replicas = [Replica("d", f"d-{i}", f"http://x{i}/v1", "m", healthy=True) for i in range(3)]
    scraper = ReplicaScraper(lambda: replicas, interval_s=5, idle_interval_s=3600)
    asked: list[str] = []

    async def one(replica: Replica) -> Signals:
        asked.append(replica.replica_id)
        return Signals(replica.deployment, replica.replica_id, {"waiting": 0.0})

    scraper._one = one  # type: ignore[method-assign]
    await scraper.scrape_once()
    assert sorted(asked) == ["d-0", "d-1", "d-2"]
    asked.clear()
    await scraper.scrape_once()  # nobody used them: nothing asked, readings kept
    assert asked == [] and len(scraper.latest) == 3
    replicas[1].inflight = 1  # a request: that one is read again
    await scraper.scrape_once()
    assert asked == ["d-1"] and len(scraper.latest) == 3
