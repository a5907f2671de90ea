"""Durable line outcomes: buffered, then one transaction per flush (rows + the batch's counts).

A line's outcome row and its counts land in the same transaction, so ``request_counts`` and
``usage`` always agree with the rows; the primary key (batch, line) refuses a second
outcome. ``charged_lines`` reads what the ledger and reservations say about lines whose
outcome was not recorded before a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from sqlalchemy import select, update

from lingyun.store.batches import Batch, BatchResult
from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry, Reservation

logger = logging.getLogger(__name__)


def line_request_id(batch_id: str, line: int) -> str:
    return f"{batch_id}-{line}"


@dataclass
class LineHistory:
    """What the money path saw of one line's attempts."""

    charged: bool = False  # a ledger entry or a still-open reservation exists
    attempts: int = 0  # reservations written (each attempt id is used once)


async def charged_lines(db: Database, batch_id: str) -> dict[int, LineHistory]:
    prefix = f"{batch_id}-"
    out: dict[int, LineHistory] = {}

    def line_of(rid: str) -> int | None:
        if not rid.startswith(prefix):
            return None
        head = rid[len(prefix) :].split(".")[0]
        return int(head) if head.isdigit() else None

    async with db.session() as s:
        keys = await s.scalars(
            select(LedgerEntry.entry_key).where(LedgerEntry.entry_key.like(f"{prefix}%"))
        )
        for rid in keys.all():
            if (n := line_of(rid)) is not None:
                out.setdefault(n, LineHistory()).charged = True
        rows = await s.execute(
            select(Reservation.request_id, Reservation.state).where(
                Reservation.request_id.like(f"{prefix}%")
            )
        )
        for rid, state in rows.all():
            if (n := line_of(rid)) is not None:
                hist = out.setdefault(n, LineHistory())
                hist.attempts += 1
                hist.charged = hist.charged or state != "released"
    return out


@dataclass
class Recorder:
    db: Database
    batch_id: str
    flush_s: float = 0.05
    _buffer: list[BatchResult] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False

    def add(self, row: BatchResult) -> None:
        self._buffer.append(row)
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"batch-recorder-{self.batch_id}")

    async def stop(self) -> None:
        """Flush what is buffered and end; never cancels a flush half way (rows taken from
        the buffer but not committed would be lost)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        await self.flush()

    async def _loop(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                logger.exception("batch %s: could not record outcomes; retrying", self.batch_id)
            await asyncio.sleep(self.flush_s)

    async def flush(self) -> None:
        rows, self._buffer = self._buffer, []
        if not rows:
            return
        try:
            async with self.db.session() as s:
                s.add_all(rows)
                await s.execute(
                    update(Batch)
                    .where(Batch.id == self.batch_id)
                    .values(
                        completed=Batch.completed + sum(1 for r in rows if r.ok),
                        failed=Batch.failed + sum(1 for r in rows if not r.ok),
                        input_tokens=Batch.input_tokens + sum(r.prompt_tokens for r in rows),
                        cached_tokens=Batch.cached_tokens + sum(r.cached_tokens for r in rows),
                        output_tokens=Batch.output_tokens + sum(r.completion_tokens for r in rows),
                        reasoning_tokens=Batch.reasoning_tokens
                        + sum(r.reasoning_tokens for r in rows),
                    )
                )
                await s.commit()
        except Exception:
            self._buffer = rows + self._buffer
            raise
