"""Tenant fairness on a saturated deployment: VTC shares the engine, FCFS starves.

Tenant A offers ten times tenant B's load (60 closed-loop clients against 6) to a simulator
deployment of 4 slots. Under VTC both are always backlogged (B has three clients per slot of
its fair share, so a slow client never leaves it idle), so each gets half of the engine:
B's tokens over the window are within 10% of A's, and the engine stays full. Under FCFS, B's
share follows its share of the queue (about 1 in 11).
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.admission.conftest import SimWorker, new_key, sim_worker
from tests.support.databases import fresh_sqlite
from tests.support.load import LoadResult, TenantLoad, Window, closed_loop
from tests.support.server import LingyunServer

pytestmark = pytest.mark.slow

SLOTS = 4


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimWorker]:
    with sim_worker(tmp_path_factory.mktemp("fair-worker"), itl_ms=20) as w:
        yield w


def _server(data: Path, worker: SimWorker, scheduler: str) -> LingyunServer:
    return LingyunServer(
        data_dir=data,
        database_url=fresh_sqlite(data),
        models=[worker.deployment(max_inflight=SLOTS)],
        extra_config={"scheduler": scheduler, "metering": False},
    )


def _run(server: LingyunServer, worker: SimWorker) -> LoadResult:
    a, _ = new_key(server, "tenant-a")
    b, _ = new_key(server, "tenant-b")

    async def active() -> int:
        async with httpx.AsyncClient(trust_env=False) as http:
            resp = await http.get(f"http://127.0.0.1:{worker.port}/health", timeout=5)
            return int(resp.json()["active"])

    return asyncio.run(
        closed_loop(
            server.base_url,
            "sim",
            [TenantLoad("a", a, 60), TenantLoad("b", b, 6)],
            # Counted in tokens, not seconds: a busy machine stretches the window, and
            # 2,000 tokens (100 requests) make the requests cut at its edges noise.
            window=Window(warmup=200, span=2000, unit="tokens"),
            max_tokens=20,
            busy_probe=active,
        )
    )


def test_vtc_shares_a_saturated_deployment_and_fcfs_starves(
    worker: SimWorker, tmp_path: Path
) -> None:
    results: dict[str, LoadResult] = {}
    for scheduler in ("vtc", "fcfs"):
        server = _server(tmp_path / scheduler, worker, scheduler)
        server.start()
        try:
            results[scheduler] = _run(server, worker)
        finally:
            server.stop()

    vtc, fcfs = results["vtc"], results["fcfs"]
    a, b = vtc.tenants["a"], vtc.tenants["b"]
    assert a.errors == b.errors == 0
    assert abs(b.tokens - a.tokens) <= 0.10 * a.tokens, (a.tokens, b.tokens)
    # Fully busy: never more than the slots (the queue holds the rest), and full nearly always.
    assert max(vtc.busy) <= SLOTS
    assert statistics.mean(vtc.busy) >= SLOTS - 0.5, vtc.busy
    fa, fb = fcfs.tenants["a"], fcfs.tenants["b"]
    assert fb.tokens < 0.3 * fa.tokens, (fa.tokens, fb.tokens)
    assert statistics.mean(fcfs.busy) >= SLOTS - 0.5, fcfs.busy
