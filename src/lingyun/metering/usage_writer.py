"""Group-committed usage rows: requests hand rows to a queue; one task writes them in batches.

A request never waits for a database round trip of its own. ``flush()`` on shutdown writes
what is queued. (The durable, crash-proof ledger with reservations is the billing layer's;
this writer records what happened for usage reports.) Prompt logging writes its table with
the same writer (``table=PromptRecord``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.exc import DBAPIError

from lingyun.lifecycle import supervised
from lingyun.store.db import Database
from lingyun.store.models import UsageRecord
from lingyun.store.outage import unreachable

logger = logging.getLogger(__name__)


class UsageWriter:
    def __init__(
        self,
        db: Database,
        max_batch: int = 500,
        max_delay_s: float = 0.05,
        *,
        table: type[Any] = UsageRecord,
        name: str = "usage-writer",
    ) -> None:
        self.db = db
        self.table: Table = table.__table__
        self.name = name
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = supervised(self.name, self._run)

    def submit(self, row: dict[str, Any]) -> None:
        self._queue.put_nowait(row)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        while not self._queue.empty():
            await self._write(self._drain())

    def _drain(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while len(rows) < self.max_batch and not self._queue.empty():
            rows.append(self._queue.get_nowait())
        return rows

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            await asyncio.sleep(self.max_delay_s)  # let a batch gather
            rows = [first, *self._drain()]
            try:
                await self._write(rows)
            except Exception as exc:  # the task must outlive any failure, or usage stops
                if unreachable(exc):
                    reason = exc.orig if isinstance(exc, DBAPIError) else exc  # not the rows
                    logger.warning("%s: rows not written (%s); retrying in 1 s", self.name, reason)
                    for row in rows:
                        self._queue.put_nowait(row)
                    await asyncio.sleep(1.0)
                else:
                    # One bad row must not block every later one: write them one by one.
                    await self._write_each(rows)

    async def _write_each(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            try:
                await self._write([row])
            except Exception:
                logger.exception(
                    "%s: dropping row %s that the database refuses",
                    self.name,
                    row.get("request_id"),
                )

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        async with self.db.session() as s:
            await s.execute(insert(self.table), rows)
            await s.commit()
