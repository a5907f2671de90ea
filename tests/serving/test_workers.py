"""``lingyun serve --workers 2``: one port, two gateway processes, one owner of the replicas.

Through the real server and the official ``openai`` client: requests land on both workers;
a 40/min rule admits exactly 40 across them without Redis; a 10-request balance is never
overdrawn by 50 concurrent requests; a worker killed with SIGKILL mid-stream is restarted,
leaves the replica alone, and each of its streams is charged once, for at least what its
client received and at most one chunk more.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from sqlalchemy import func, select

from lingyun.serving.worker_env import SLOT_ENV
from lingyun.store.db import Database
from lingyun.store.ledger import Account, CreditLease, LedgerEntry, Reservation
from lingyun.store.serving import ServingLeaseRow
from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer

pytestmark = [pytest.mark.slow]
MSG = [{"role": "user", "content": "hi"}]
HEADER = "x-lingyun-worker"


def _server(tmp_path: Path, url: str, **sim: Any) -> LingyunServer:
    return LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=url,
        models=[{"name": "sim", "engine": "simulator", "args": sim}],
        serve_args=["--workers", "2"],
    )


def _query(url: str, stmt: Any) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        db = Database(url)
        try:
            async with db.session() as s:
                return [tuple(r) for r in (await s.execute(stmt)).all()]
        finally:
            await db.close()

    return asyncio.run(run())


def _workers(server: LingyunServer) -> dict[int, psutil.Process]:
    """The supervisor's gateway workers by slot (replicas are their children, not listed)."""
    assert server.proc is not None
    found: dict[int, psutil.Process] = {}
    for child in psutil.Process(server.proc.pid).children():
        try:
            slot = child.environ().get(SLOT_ENV)
        except psutil.NoSuchProcess:
            continue
        if slot is not None:
            found[int(slot)] = child
    return found


def _replica_pids(server: LingyunServer) -> set[int]:
    assert server.proc is not None
    return {
        p.pid
        for p in psutil.Process(server.proc.pid).children(recursive=True)
        if "lingyun.cli.worker" in " ".join(p.cmdline())
    }


def _until(what: str, check: Any, timeout_s: float = 120) -> Any:
    """Poll a state (never a guess of time) until it holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_workers_share_one_port_and_one_rate_window(tmp_path: Path) -> None:
    server = _server(tmp_path, fresh_sqlite(tmp_path))
    key = server.create_key("rl")
    server.cli("limits", "set", "--tenant", "rl", "--rpm", "40", "--burst", "0")
    server.start()
    try:
        landed: list[str] = []

        async def fire() -> list[int]:
            client = openai.AsyncOpenAI(
                api_key=key, base_url=f"{server.base_url}/v1", max_retries=0
            )
            async with client:

                async def one() -> int:
                    try:
                        raw = await client.chat.completions.with_raw_response.create(
                            model="sim", messages=MSG, max_tokens=2
                        )
                        landed.append(raw.headers[HEADER])
                        return 200
                    except openai.RateLimitError as exc:
                        landed.append(exc.response.headers[HEADER])
                        return 429

                return await asyncio.gather(*(one() for _ in range(60)))

        codes = asyncio.run(fire())
        # One window for both workers: per-worker windows would admit up to 80.
        assert codes.count(200) == 40 and codes.count(429) == 20, codes
        assert set(landed) == {"0", "1"}, landed  # the kernel gave each worker connections
        # exactly one replica process, run by whichever worker holds the lease
        assert len(_replica_pids(server)) == 1
    finally:
        server.stop()


def test_fifty_on_a_ten_request_balance_never_overdraw_with_two_workers(
    tmp_path: Path,
) -> None:
    url = fresh_sqlite(tmp_path)
    server = _server(tmp_path, url, itl_ms=5)
    key = server.create_key("tight")
    # Output costs 0.001 per token and input nothing: a 10-token answer costs exactly 0.01.
    server.cli("prices", "set", "sim", "--input", "0", "--output", "1000")
    server.cli("topup", "--tenant", "tight", "--amount", "0.1")
    server.start()
    try:
        landed: list[str] = []

        async def fire() -> list[int]:
            client = openai.AsyncOpenAI(
                api_key=key, base_url=f"{server.base_url}/v1", max_retries=0
            )
            async with client:

                async def one() -> int:
                    try:
                        raw = await client.chat.completions.with_raw_response.create(
                            model="sim", messages=MSG, max_tokens=10
                        )
                        landed.append(raw.headers[HEADER])
                        return 200
                    except openai.RateLimitError as exc:
                        assert exc.code == "insufficient_quota"
                        landed.append(exc.response.headers[HEADER])
                        return 429

                return await asyncio.gather(*(one() for _ in range(50)))

        codes = asyncio.run(fire())
        assert set(landed) == {"0", "1"}, landed
        assert codes.count(200) + codes.count(429) == 50
        assert 1 <= codes.count(200) <= 10, codes
        bal = server.cli_json("balance", "--tenant", "tight")
        assert Decimal(bal["balance"]) >= 0 and Decimal(bal["reserved"]) == 0, bal
        assert Decimal(bal["ledger_sum"]) == Decimal(bal["balance"])
        usage = _query(url, select(LedgerEntry.amount).where(LedgerEntry.kind == "usage"))
        assert len(usage) == codes.count(200)  # one entry per answered request
        assert all(Decimal(str(a)) == Decimal("-0.01") for (a,) in usage)
    finally:
        server.stop()


def test_kill_9_of_a_worker_mid_stream_charges_each_stream_once(
    tmp_path: Path, fresh_database_url: str
) -> None:
    url = fresh_database_url
    server = _server(tmp_path, url, itl_ms=40)
    key = server.create_key("crashy")
    server.cli("prices", "set", "sim", "--input", "1", "--output", "1000")
    server.cli("topup", "--tenant", "crashy", "--amount", "100")
    server.start()
    try:
        owner = _query(url, select(ServingLeaseRow.owner))[0][0]
        victim = 1 - int(owner.rsplit("/w", 1)[1])  # the worker that only follows the replica
        replicas_before = _replica_pids(server)
        streams: dict[str, dict[str, Any]] = {}  # request id -> worker, tokens, error
        serving_on: dict[str, str] = {}  # request id -> worker, as soon as headers arrive
        lock = threading.Lock()
        flowing = threading.Semaphore(0)

        def stream() -> None:
            got, rid, worker, failed = 0, "", "", False
            try:
                with httpx.stream(
                    "POST",
                    f"{server.base_url}/v1/chat/completions",
                    headers={"authorization": f"Bearer {key}"},
                    json={"model": "sim", "messages": MSG, "max_tokens": 120, "stream": True},
                    timeout=60,
                ) as resp:
                    rid, worker = resp.headers["x-request-id"], resp.headers[HEADER]
                    with lock:
                        serving_on[rid] = worker
                    for line in resp.iter_lines():
                        if '"content":"' in line and '"content":""' not in line:
                            got += 1
                            if got == 5:
                                flowing.release()
            except httpx.HTTPError:
                failed = True  # the worker died under us
            with lock:
                streams[rid] = {"worker": worker, "got": got, "failed": failed}

        threads: list[threading.Thread] = []
        # Open streams one by one until two flow through the victim and one through the
        # other worker (the kernel picks who accepts); each is past its fifth token.
        while len(threads) < 16:
            with lock:
                seen = list(serving_on.values())
            if seen.count(str(victim)) >= 2 and seen.count(str(1 - victim)) >= 1:
                break
            t = threading.Thread(target=stream)
            t.start()
            threads.append(t)
            assert flowing.acquire(timeout=60)
        workers = _workers(server)
        victim_pid = workers[victim].pid
        os.kill(victim_pid, signal.SIGKILL)
        for t in threads:
            t.join(timeout=60)
        assert len(streams) == len(threads)
        killed = {rid: s for rid, s in streams.items() if s["worker"] == str(victim)}
        survived = {rid: s for rid, s in streams.items() if s["worker"] != str(victim)}
        assert killed, streams
        assert all(s["failed"] for s in killed.values())  # each such client saw an error
        assert all(not s["failed"] and s["got"] == 120 for s in survived.values())

        # The supervisor restarts the slot; the new process replays its delivery log.
        _until("a restarted worker", lambda: _workers(server).get(victim, None) is not None
               and _workers(server)[victim].pid != victim_pid)  # fmt: skip
        # nothing holds money any more: no open reservation, and every lease back (a lease
        # goes back only once each request it covered is folded into the ledger)
        _until("nothing held", lambda: _query(
            url, select(func.count()).select_from(Reservation).where(Reservation.state == "open")
        )[0][0] == 0 and _query(url, select(func.count()).select_from(CreditLease))[0][0] == 0)  # fmt: skip
        assert _replica_pids(server) == replicas_before  # a follower's restart left it alone

        entries = _query(
            url,
            select(LedgerEntry.entry_key, LedgerEntry.completion_tokens).where(
                LedgerEntry.kind == "usage"
            ),
        )
        charged = {str(k): int(c) for k, c in entries}
        assert len(entries) == len(charged) == len(streams)  # one entry each, none twice
        for rid, s in killed.items():
            assert s["got"] <= charged[rid] <= s["got"] + 1, (rid, s, charged[rid])
        for rid in survived:
            assert charged[rid] == 120
        balance, reserved = _query(url, select(Account.balance, Account.reserved))[0]
        ledger = _query(url, select(func.sum(LedgerEntry.amount)))[0][0]
        assert reserved == 0 and Decimal(str(balance)) == Decimal(str(ledger))

        # and the restarted worker serves and bills again (a new connection each time: the
        # kernel hands it to whichever worker accepts, the restarted one once it listens)
        def answered_by_restarted() -> bool:
            with server.client(key, max_retries=0) as client:
                raw = client.chat.completions.with_raw_response.create(
                    model="sim", messages=MSG, max_tokens=2
                )
            return raw.headers[HEADER] == str(victim)

        _until("an answer from the restarted worker", answered_by_restarted, timeout_s=60)
    finally:
        server.stop()
