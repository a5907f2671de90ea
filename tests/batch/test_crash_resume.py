"""``kill -9`` of ``serve`` in the middle of a 1,000-line batch, then a restart: every line has
exactly one result and exactly one ledger entry (no line run twice, none lost)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from lingyun.store.batches import BatchResult
from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry
from tests.batch.conftest import chat_line, jsonl, read_lines, wait_batch
from tests.support.server import LingyunServer

LINES = 1000


def _rows(url: str, stmt: Any) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        db = Database(url)
        try:
            async with db.session() as s:
                return [tuple(r) for r in (await s.execute(stmt)).all()]
        finally:
            await db.close()

    return asyncio.run(run())


def test_kill_9_mid_batch_then_restart_gives_one_result_and_one_charge_per_line(
    tmp_path: Path, fresh_database_url: str
) -> None:
    server = LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=fresh_database_url,
        models=[
            {"name": "sim-slow", "engine": "simulator", "args": {"itl_ms": 15}, "max_inflight": 16}
        ],
        # More lines in flight than slots: lines wait for room before they reserve money.
        extra_config={"batch_concurrency": 40},
    )
    key = server.create_key("crashy")
    server.cli("prices", "set", "sim-slow", "--input", "1", "--output", "1000")
    server.cli("topup", "--tenant", "crashy", "--amount", "1000")
    server.start()
    client = server.client(key, max_retries=0)
    lines = [chat_line(f"k{i}", model="sim-slow", max_tokens=6) for i in range(LINES)]
    fid = client.files.create(file=("k.jsonl", jsonl(lines)), purpose="batch").id
    batch = client.batches.create(
        input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 120
    while True:  # wait until the batch is well under way, then kill the server outright
        counts = client.batches.retrieve(batch.id).request_counts
        if counts is not None and counts.completed >= 150:
            break
        assert time.monotonic() < deadline, "batch did not get going"
        time.sleep(0.05)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    server.proc = None
    before = _rows(fresh_database_url, select(BatchResult.line))
    assert 150 <= len(before) < LINES  # it died in the middle

    server.start()  # same name: start-up reconciles, the runner resumes the batch
    try:
        done = wait_batch(client, batch.id)
        assert done.status == "completed", done
        assert done.request_counts is not None and done.request_counts.total == LINES
        out = read_lines(client, done.output_file_id)
        err = read_lines(client, done.error_file_id)
        seen = collections.Counter(r["custom_id"] for r in out + err)
        assert len(out) + len(err) == LINES and set(seen.values()) == {1}
        assert set(seen) == {f"k{i}" for i in range(LINES)}
        # only lines running at the kill, or finished but not yet recorded, may be reported
        # interrupted (charged once, not run again): at most the runner's concurrency
        assert {r["error"]["code"] for r in err} <= {"line_interrupted"}
        assert len(err) <= 40
        entries = _rows(
            fresh_database_url,
            select(LedgerEntry.entry_key).where(LedgerEntry.kind == "usage"),
        )
        keys = collections.Counter(k.split(".")[0] for (k,) in entries)
        assert len(entries) == LINES and set(keys.values()) == {1}
        assert set(keys) == {f"{batch.id}-{n}" for n in range(1, LINES + 1)}
    finally:
        server.stop()
