"""A whole (non-streamed) answer that reached its client is charged even if the gateway dies
before its settlement commits.

Deterministic on PostgreSQL: the test holds an EXCLUSIVE lock on ``ledger_entries`` (reads
and reservations go on; the settlement's insert waits), so the answer goes out while its
settlement cannot land; then ``kill -9``, the lock goes, the gateway restarts and reconciles.
(A Batch API line is such an answer too: its result could be recorded uncharged.)
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from lingyun.store.ledger import CreditLease, LedgerEntry
from tests.metering.test_billing_server import _db_query, _server
from tests.support.databases import _dsn, fresh_postgres

MSG = [{"role": "user", "content": "bill me"}]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


class TableLock:
    """``LOCK TABLE … IN EXCLUSIVE MODE`` held by a psql session until ``release``."""

    def __init__(self, url: str, table: str) -> None:
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", _dsn(url)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE; SELECT 'locked';\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if line.strip() != "locked":  # the lock is held: a state, not a guess of time
            self.release()
            raise AssertionError(f"psql did not take the lock: {line!r}")

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.stdin.closed:
            return
        if self.proc.poll() is None:
            self.proc.stdin.write("ROLLBACK;\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def test_a_whole_answer_sent_before_its_settlement_is_charged_after_kill_9(
    tmp_path: Path, postgres_url: str
) -> None:
    server = _server(tmp_path, postgres_url)
    key = server.create_key("unary")
    server.cli("prices", "set", "sim", "--input", "0", "--output", "1000")
    server.cli("topup", "--tenant", "unary", "--amount", "10")
    server.start()
    lock: TableLock | None = None
    try:
        lock = TableLock(postgres_url, "ledger_entries")
        client = server.client(key, max_retries=0)
        answer = client.chat.completions.create(model="sim", messages=MSG, max_tokens=7)  # type: ignore[arg-type]
        assert answer.usage is not None
        completion = answer.usage.completion_tokens
        assert completion > 0
        # the answer is out; its fold into the ledger waits on the lock, and the money it
        # was decided against is still held in this gateway's lease
        [(held,)] = _db_query(postgres_url, select(CreditLease.amount))
        assert held > 0
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        server.proc = None
        lock.release()
        server.start()  # same owner: start-up reconciles its previous life from the log
        entries = _db_query(
            postgres_url,
            select(LedgerEntry.completion_tokens, LedgerEntry.amount).where(
                LedgerEntry.kind == "usage"
            ),
        )
        assert entries == [(completion, -Decimal(completion) / 1000)]
    finally:
        if lock is not None:
            lock.release()
        server.stop()
