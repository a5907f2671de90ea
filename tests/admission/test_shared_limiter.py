"""The workers' shared limiter: one file, exact across the limiters (processes) that open it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from lingyun.admission.limits import Charge, LimitRule
from lingyun.admission.shared_limiter import SharedLimiter

pytestmark = pytest.mark.anyio

RULE = LimitRule(scope="tenant", subject_id="t1", tenant_id="t1", rpm=40, burst=0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _charge(i: int, rule: LimitRule = RULE, tokens: int = 10) -> Charge:
    return Charge(f"req-{i}", "t1", (rule,), tokens)


async def test_two_workers_share_one_window(tmp_path: Path) -> None:
    clock = Clock()
    a = SharedLimiter(tmp_path / "l.db", owner="w0", clock=clock)
    b = SharedLimiter(tmp_path / "l.db", owner="w1", clock=clock)
    admitted = 0
    for i in range(100):  # alternating, as two workers would take turns
        outcome = await (a if i % 2 else b).acquire(_charge(i))
        admitted += outcome.refusal is None
    assert admitted == 40  # per-process windows would have let 80 through
    refused = await a.acquire(_charge(100))
    assert refused.refusal is not None and refused.refusal.dimension == "requests"
    assert 0 < refused.refusal.retry_after_s <= 60
    clock.now += 60.001  # the whole window has passed
    assert (await b.acquire(_charge(101))).refusal is None
    await a.close()
    await b.close()


async def test_tokens_are_corrected_and_slots_freed(tmp_path: Path) -> None:
    rule = LimitRule(scope="key", subject_id="k", tenant_id="t1", tpm=100, concurrency=1)
    clock = Clock()
    a = SharedLimiter(tmp_path / "l.db", owner="w0", clock=clock)
    b = SharedLimiter(tmp_path / "l.db", owner="w1", clock=clock)
    first = _charge(1, rule, tokens=90)
    assert (await a.acquire(first)).refusal is None
    busy = await b.acquire(_charge(2, rule, tokens=5))
    assert busy.refusal is not None and busy.refusal.dimension == "concurrency"
    await a.release(first, used_tokens=20)  # reserved 90, used 20
    outcome = await b.acquire(_charge(3, rule, tokens=70))
    assert outcome.refusal is None and outcome.states[0].tokens_remaining == 10
    await a.close()
    await b.close()


async def test_a_restarted_worker_frees_the_slots_it_died_holding(tmp_path: Path) -> None:
    rule = LimitRule(scope="key", subject_id="k", tenant_id="t1", concurrency=1)
    dead = SharedLimiter(tmp_path / "l.db", owner="w0")
    assert (await dead.acquire(_charge(1, rule))).refusal is None
    other = SharedLimiter(tmp_path / "l.db", owner="w1")
    assert (await other.acquire(_charge(2, rule))).refusal is not None
    # w0 dies without releasing; its successor in the slot opens the file under its name
    await dead.close()
    SharedLimiter(tmp_path / "l.db", owner="w0")
    assert (await other.acquire(_charge(3, rule))).refusal is None
    await other.close()


def _hammer(path: str, owner: str, start: int, n: int, out: multiprocessing.Queue[int]) -> None:
    import asyncio

    async def run() -> int:
        limiter = SharedLimiter(Path(path), owner=owner)
        got = 0
        for i in range(start, start + n):
            got += (await limiter.acquire(_charge(i))).refusal is None
        await limiter.close()
        return got

    out.put(asyncio.run(run()))


def test_processes_racing_admit_exactly_the_limit(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[int] = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(str(tmp_path / "l.db"), f"w{i}", i * 1000, 60, out))
        for i in range(3)
    ]
    for p in procs:
        p.start()
    totals = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(totals) == 40, totals
