"""The batch runner: one supervised task that claims batches and runs them in the batch lane.

A batch is claimed with a lease (``owner``, ``lease_until``) renewed while it runs, so
several gateways on one database run different batches and never the same one; a batch
whose gateway died is picked up once its lease lapses (at once by the same gateway name
after a restart). ``concurrency`` bounds this gateway's batch lines in flight; the fair
queue's ``batch`` band decides when each reaches a replica.

While it runs batches it looks every ``poll_s``. With nothing to run and a change feed it
waits instead for the feed's ``batches`` topic (a batch created, cancelled, claimed or
released anywhere) or for the moment another gateway's lease would lapse: an idle gateway
issues no statement for batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from lingyun.batch.files import FileStore
from lingyun.batch.job import BatchJob
from lingyun.gateway.pipeline import Gateway
from lingyun.store.batches import TERMINAL, Batch
from lingyun.store.changes import ChangeFeed
from lingyun.store.db import Database
from lingyun.store.models import utcnow
from lingyun.tenancy.service import KeyInfo, TenancyService

logger = logging.getLogger(__name__)


class BatchRunner:
    def __init__(
        self,
        db: Database,
        files: FileStore,
        gateway: Gateway,
        *,
        owner: str,
        concurrency: int = 32,
        poll_s: float = 0.5,
        lease_s: float = 30.0,
        feed: ChangeFeed | None = None,
    ) -> None:
        self.db, self.files, self.gateway = db, files, gateway
        self.owner = owner
        self.slots = asyncio.Semaphore(concurrency)
        self.poll_s = poll_s
        self.lease_s = lease_s
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.feed = feed
        self._wake = asyncio.Event()
        # When the earliest lease of another gateway's batch lapses (None: no such batch).
        self._next_lapse: datetime | None = None

    async def start(self) -> None:
        if self.feed is not None:
            self.feed.subscribe("batches", self._changed)
        self._task = asyncio.create_task(self._loop(), name="batch-runner")

    async def _changed(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._jobs.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.clear()
        with contextlib.suppress(Exception):
            await self._release()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()  # before the reads: a change committed after them wakes us
            try:
                await self._renew()
                for batch_id in await self._claim():
                    self._jobs[batch_id] = asyncio.create_task(
                        self._run(batch_id), name=f"batch-{batch_id}"
                    )
            except Exception:
                logger.exception("batch runner pass failed; retrying")
                self._next_lapse = utcnow()  # look again after poll_s
            await self._idle()

    async def _idle(self) -> None:
        """Sleep ``poll_s`` while batches run here (or without a feed); otherwise until the
        feed moves or another gateway's lease lapses."""
        if self._jobs or self.feed is None:
            await asyncio.sleep(self.poll_s)
            return
        timeout = None
        if self._next_lapse is not None:
            timeout = max(self.poll_s, (self._next_lapse - utcnow()).total_seconds())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _run(self, batch_id: str) -> None:
        job = BatchJob(
            self.db,
            self.files,
            self.gateway,
            batch_id,
            key_of=self.key_info,
            slots=self.slots,
            poll_s=self.poll_s,
        )
        try:
            await job.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("batch %s failed on this gateway; it will be retried", batch_id)
            await asyncio.sleep(self.poll_s * 10)
        finally:
            self._jobs.pop(batch_id, None)

    async def _claim(self) -> list[str]:
        now = utcnow()
        free = or_(Batch.owner.is_(None), Batch.owner == self.owner, Batch.lease_until < now)
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(Batch.id, Batch.owner, Batch.lease_until)
                    .where(Batch.status.not_in(TERMINAL))
                    .order_by(Batch.created_at)
                )
            ).all()
            held = [r.lease_until for r in rows if _held_elsewhere(r, self.owner, now)]
            self._next_lapse = min(held) if held else None
            claimed = []
            for row in rows:
                if row.id in self._jobs or _held_elsewhere(row, self.owner, now):
                    continue
                result = await s.execute(
                    update(Batch)
                    .where(Batch.id == row.id, Batch.status.not_in(TERMINAL), free)
                    .values(owner=self.owner, lease_until=now + timedelta(seconds=self.lease_s))
                )
                if getattr(result, "rowcount", 0):
                    claimed.append(row.id)
            await s.commit()
        return claimed

    async def _renew(self) -> None:
        if not self._jobs:
            return
        async with self.db.session() as s:
            await s.execute(
                update(Batch)
                .where(Batch.id.in_(list(self._jobs)), Batch.owner == self.owner)
                .values(lease_until=utcnow() + timedelta(seconds=self.lease_s))
            )
            await s.commit()

    async def _release(self) -> None:
        """On a clean stop, let another gateway take over at once (the owner's change wakes
        the others' runners through the feed)."""
        async with self.db.session() as s:
            await s.execute(
                update(Batch)
                .where(Batch.owner == self.owner, Batch.status.not_in(TERMINAL))
                .values(owner=None, lease_until=utcnow())
            )
            await s.commit()

    async def key_info(self, key_id: str) -> KeyInfo | None:
        """The batch's key as the gateway would see it; None once revoked or expired."""
        return await TenancyService(self.db).live_key(key_id)


def _held_elsewhere(row: Any, owner: str, now: datetime) -> bool:
    """Another live gateway's batch: its owner is not us and its lease has not lapsed."""
    return (
        row.owner is not None
        and row.owner != owner
        and row.lease_until is not None
        and row.lease_until >= now
    )
