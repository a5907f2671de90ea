"""500 clients that give up while queued behind a full deployment.

One request holds the deployment's only slot (an engine that stalls after its first token);
500 more queue behind it and then disconnect. The gateway must let go of all of them: the
queue empties, every reservation is released (nothing reserved on the balance, nothing
charged), and the engine never sees one of them (its own count of sequences started).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.support.databases import fresh_sqlite
from tests.support.fault_load import until
from tests.support.server import LingyunServer
from tests.support.sim_worker import SimWorker, sim_worker

ABANDONED = 500
BODY = {"model": "sim", "messages": [{"role": "user", "content": "wait for me"}], "max_tokens": 4}


def test_abandoned_queued_requests_release_everything(tmp_path: Path) -> None:
    with sim_worker(tmp_path / "sim") as sim:
        server = LingyunServer(
            data_dir=tmp_path / "lingyun",
            database_url=fresh_sqlite(tmp_path / "lingyun"),
            models=[sim.deployment("sim", max_inflight=1)],
        )
        key = server.create_key("patient")
        server.cli("prices", "set", "sim", "--input", "0", "--output", "1000")
        server.cli("topup", "--tenant", "patient", "--amount", "100")
        server.start()
        try:
            asyncio.run(_abandon(server, sim, key))
            balance = server.cli_json("balance", "--tenant", "patient")
        finally:
            server.stop()
        db = server.data_dir / "lingyun.db"
        charged = _rows(
            db, "SELECT amount FROM ledger_entries WHERE kind = 'usage' AND amount != 0"
        )
        gone = _rows(db, "SELECT COUNT(*) FROM usage_records WHERE status_code = 499")
    assert Decimal(balance["reserved"]) == 0
    assert len(charged) == 2  # the slot holder's first token and the last request; no others
    assert gone == [(ABANDONED + 1,)]  # the 500, and the slot holder when it let go


async def _abandon(server: LingyunServer, sim: SimWorker, key: str) -> None:
    auth = {"authorization": f"Bearer {key}"}
    unbounded = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120, headers=auth) as http:
        holder = {**BODY, "stream": True, "sim_stall_after": 1}
        async with http.stream("POST", "/v1/chat/completions", json=holder) as stream:
            lines = stream.aiter_lines()
            while not (await anext(lines)).startswith("data:"):
                pass  # the slot is taken: the engine is producing (then stalls)
            assert sim.health()["started"] == 1

            waiting = httpx.AsyncClient(
                base_url=server.base_url, timeout=120, headers=auth, limits=unbounded
            )
            tasks = [
                asyncio.create_task(waiting.post("/v1/chat/completions", json=BODY))
                for _ in range(ABANDONED)
            ]
            await _until_queue(server, lambda q: q["queued_total"] >= ABANDONED, "all queued")
            for task in tasks:  # the clients give up: their connections close
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await waiting.aclose()
            await _until_queue(server, _only_holder, "the queue empty, the holder alone")
            assert sim.health()["started"] == 1  # none of the 500 reached the engine
        await _until_queue(server, lambda q: q["deployments"]["sim"]["active"] == 0, "slot free")
        answer = await http.post("/v1/chat/completions", json=BODY)
        assert answer.status_code == 200, answer.text
        assert sim.health()["started"] == 2
    # a request that kept hold of its share would keep the lease (and the balance's
    # reserved money) forever: once idle, everything goes back while the server runs
    await until(lambda: _held(server) == (0, 0, 0), "every reservation and lease released")


def _only_holder(queue: dict[str, Any]) -> bool:
    lane = queue["deployments"]["sim"]
    return lane["active"] == 1 and not lane["waiting"]


async def _until_queue(
    server: LingyunServer, check: Callable[[dict[str, Any]], bool], what: str
) -> None:
    deadline = time.monotonic() + 60
    while not check((await asyncio.to_thread(server.health))["queue"]):
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.1)


def _held(server: LingyunServer) -> tuple[int, int, int]:
    """Open reservations, credit leases, and accounts with money reserved."""
    db = server.data_dir / "lingyun.db"
    queries = (
        "SELECT COUNT(*) FROM reservations WHERE state = 'open'",
        "SELECT COUNT(*) FROM credit_leases",
        "SELECT COUNT(*) FROM accounts WHERE reserved != 0",
    )
    opened, leases, reserved = (int(_rows(db, q)[0][0]) for q in queries)
    return opened, leases, reserved


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()
