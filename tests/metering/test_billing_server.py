"""Billing through a real ``lingyun serve``: refusals, exact spend, and a kill -9 mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from decimal import Decimal
from pathlib import Path

import httpx
import openai
from sqlalchemy import func, select

from lingyun.store.db import Database
from lingyun.store.ledger import Account, CreditLease, LedgerEntry
from tests.support.server import LingyunServer

MSG = [{"role": "user", "content": "bill me"}]


def _server(tmp_path: Path, database_url: str, **args: object) -> LingyunServer:
    return LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=database_url,
        models=[{"name": "sim", "engine": "simulator", "args": dict(args)}],
    )


def _db_query(url: str, stmt: object) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        db = Database(url)
        try:
            async with db.session() as s:
                return [tuple(r) for r in (await s.execute(stmt)).all()]  # type: ignore[call-overload]
        finally:
            await db.close()

    return asyncio.run(run())


def test_balance_for_ten_admits_exactly_ten_of_fifty(
    tmp_path: Path, fresh_database_url: str
) -> None:
    server = _server(tmp_path, fresh_database_url, itl_ms=5)
    key = server.create_key("tight")
    # Output costs 0.001 per token and input nothing: a 10-token answer costs exactly 0.01.
    server.cli("prices", "set", "sim", "--input", "0", "--output", "1000")
    server.cli("topup", "--tenant", "tight", "--amount", "0.1")
    server.start()
    try:

        async def fire() -> list[int]:
            client = openai.AsyncOpenAI(
                api_key=key, base_url=f"{server.base_url}/v1", max_retries=0
            )
            async with client:

                async def one() -> int:
                    try:
                        await client.chat.completions.create(
                            model="sim",
                            messages=MSG,
                            max_tokens=10,  # type: ignore[arg-type]
                        )
                        return 200
                    except openai.RateLimitError as exc:
                        assert exc.code == "insufficient_quota"
                        assert "balance" in exc.message
                        return 429

                return await asyncio.gather(*(one() for _ in range(50)))

        codes = asyncio.run(fire())
        assert codes.count(200) == 10 and codes.count(429) == 40
        bal = server.cli_json("balance", "--tenant", "tight")
        assert Decimal(bal["balance"]) == 0 and Decimal(bal["reserved"]) == 0
        # The balance is derived from the ledger, which holds the top-up and one entry per
        # answered request at exactly its price (not just some entries that sum to zero).
        assert Decimal(bal["ledger_sum"]) == Decimal(bal["balance"])
        entries = _db_query(fresh_database_url, select(LedgerEntry.kind, LedgerEntry.amount))
        amounts = sorted((str(kind), Decimal(str(amount))) for kind, amount in entries)
        assert amounts == [("topup", Decimal("0.1"))] + [("usage", Decimal("-0.01"))] * 10
    finally:
        server.stop()


def test_kill_9_mid_stream_then_restart_settles_each_request_once(
    tmp_path: Path, fresh_database_url: str
) -> None:
    server = _server(tmp_path, fresh_database_url, itl_ms=40)
    key = server.create_key("crashy")
    server.cli("prices", "set", "sim", "--input", "1", "--output", "1000")
    server.cli("topup", "--tenant", "crashy", "--amount", "100")
    server.start()
    received: dict[str, int] = {}
    flowing = threading.Semaphore(0)  # one release per stream past 10 tokens
    lock = threading.Lock()

    def stream() -> None:
        got, rid = 0, ""
        try:
            with httpx.stream(
                "POST",
                f"{server.base_url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "sim", "messages": MSG, "max_tokens": 500, "stream": True},
                timeout=30,
            ) as resp:
                rid = resp.headers["x-request-id"]
                for line in resp.iter_lines():
                    if '"content":"' in line and '"content":""' not in line:  # a token
                        got += 1
                        if got == 11:
                            flowing.release()
        except httpx.HTTPError:
            pass  # the gateway died under us
        with lock:
            received[rid] = got

    threads = [threading.Thread(target=stream) for _ in range(6)]
    for t in threads:
        t.start()
    for _ in threads:  # every stream is flowing (the state, not a guess of time)
        assert flowing.acquire(timeout=120)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    server.proc = None
    for t in threads:
        t.join(timeout=30)
    assert len(received) == 6 and all(n > 10 for n in received.values()), received

    # died holding its credit lease on the account (the streams had no reservation rows:
    # each was decided in memory against the lease and recorded in the delivery log)
    leased = _db_query(fresh_database_url, select(CreditLease.owner, CreditLease.amount))
    assert len(leased) == 1 and Decimal(str(leased[0][1])) > 0, leased
    assert _db_query(fresh_database_url, select(Account.reserved))[0][0] > 0

    server.start()  # same port, same owner name: start-up recovers our previous life
    try:
        assert _db_query(fresh_database_url, select(CreditLease.lease_id)) == []
        entries = _db_query(
            fresh_database_url,
            select(LedgerEntry.entry_key, LedgerEntry.completion_tokens, LedgerEntry.note).where(
                LedgerEntry.kind == "usage"
            ),
        )
        assert sorted(e[0] for e in entries) == sorted(received)  # one each, none twice
        assert all(e[2] == "reconciled" for e in entries)
        # charged what reached each client (its delivery log outlives the process), and at
        # most the one chunk that was on its way when the process died
        charged = {str(k): int(c) for k, c, _ in entries}  # type: ignore[call-overload]
        for rid, got in received.items():
            assert got <= charged[rid] <= got + 1, (rid, got, charged[rid])
        account = _db_query(fresh_database_url, select(Account.balance, Account.reserved))[0]
        ledger = _db_query(fresh_database_url, select(func.sum(LedgerEntry.amount)))[0][0]
        assert account[1] == 0 and Decimal(str(account[0])) == Decimal(str(ledger))
        # and the restarted gateway serves and bills again
        client = server.client(key, max_retries=0)
        client.chat.completions.create(model="sim", messages=MSG, max_tokens=2)  # type: ignore[arg-type]
    finally:
        server.stop()
