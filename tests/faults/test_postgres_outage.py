"""PostgreSQL stopped for 10 s under steady load, then started again.

The gateway (a real ``lingyun serve`` on a private cluster) must recover without a restart;
every request it answered with 200 is charged exactly once, at exactly its price, and every
other answer is an OpenAI-shaped 503 ``service_unavailable`` with Retry-After (never a 500).
Known keys keep authenticating from the cache while the database is away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from sqlalchemy import select

from lingyun.store.ledger import CreditLease, LedgerEntry, Reservation
from tests.metering.test_billing_server import _db_query
from tests.support.fault_load import Load, steady, until
from tests.support.private_services import PrivatePostgres, private_postgres
from tests.support.server import LingyunServer

OUTAGE_S = 10.0  # the fault itself: how long the database is away
OUTPUT_PER_M = Decimal(1000)  # 0.001 per output token, input free


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    with private_postgres() as cluster:
        yield cluster


def test_a_database_outage_under_load_loses_no_charge_and_answers_503(
    pg: PrivatePostgres, tmp_path: Path
) -> None:
    server = LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=pg.url,
        models=[{"name": "sim", "engine": "simulator", "args": {"itl_ms": 2}}],
    )
    key = server.create_key("steady")
    server.cli("prices", "set", "sim", "--input", "0", "--output", str(OUTPUT_PER_M))
    server.cli("topup", "--tenant", "steady", "--amount", "1000")
    server.start()
    try:
        load, restarted_at = asyncio.run(_outage(server, key, pg))
        # settlements that waited out the outage land; then the ledger is complete
        # (a lease goes back only once every request it covered is folded into the ledger)
        _poll(lambda: not _held(pg), "every reservation settled and every lease back")
        entries = _db_query(
            pg.url,
            select(
                LedgerEntry.entry_key,
                LedgerEntry.prompt_tokens,
                LedgerEntry.completion_tokens,
                LedgerEntry.amount,
            ).where(LedgerEntry.kind == "usage"),
        )
    finally:
        server.stop()

    statuses = {a.status for a in load.answers}
    assert statuses <= {200, 503}, f"answers other than 200/503: {statuses}"
    refused = load.refused()
    assert refused, "the outage refused nothing: was the database really away?"
    for a in refused:
        assert (a.code, a.error_type) == ("service_unavailable", "server_error"), a
        assert a.retry_after is not None and int(a.retry_after) >= 1, a
    assert load.served(since=restarted_at), "no request served after the restart"

    # Every served request: exactly one ledger entry, at its exact price; nothing else paid.
    charged = {e[0]: e for e in entries if e[3] != 0}
    served = {a.request_id: a for a in load.served()}
    assert len(entries) == len({e[0] for e in entries})  # one entry per request id
    assert set(charged) == set(served)
    for rid, a in served.items():
        _, prompt, completion, amount = charged[rid]
        assert (prompt, completion) == (a.prompt_tokens, a.completion_tokens)
        assert amount == -Decimal(completion) * OUTPUT_PER_M / 1_000_000
    print(
        f"\n{len(served)} served, {len(refused)} refused with 503 during a {OUTAGE_S:.0f} s outage"
    )


async def _outage(server: LingyunServer, key: str, pg: PrivatePostgres) -> tuple[Load, float]:
    load, stop = Load(), asyncio.Event()
    client = openai.AsyncOpenAI(
        api_key=key, base_url=f"{server.base_url}/v1", max_retries=0, timeout=60
    )
    async with client:
        runner = asyncio.create_task(steady(client, "sim", load, stop))
        try:
            await until(lambda: len(load.served()) >= 20, "20 requests served before the fault")
            await asyncio.to_thread(pg.stop)
            stopped_at = time.monotonic()
            await until(lambda: bool(load.refused(since=stopped_at)), "a 503 during the outage")
            await asyncio.sleep(max(0.0, stopped_at + OUTAGE_S - time.monotonic()))
            await asyncio.to_thread(pg.start)
            restarted_at = time.monotonic()
            await until(
                lambda: len(load.served(since=restarted_at)) >= 20,
                "20 requests served after the restart (no gateway restart)",
            )
        finally:
            stop.set()
            await runner
    return load, restarted_at


def _held(pg: PrivatePostgres) -> list[tuple[object, ...]]:
    """Open reservations and credit leases: what still holds money."""
    opened = select(Reservation.request_id).where(Reservation.state == "open")
    return _db_query(pg.url, opened) + _db_query(pg.url, select(CreditLease.lease_id))


def _poll(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.1)
