"""The batch runner: one supervised task that claims batches and runs them in the batch lane.

A batch is claimed with a lease (``owner``, ``lease_until``) renewed while it runs, so
several gateways on one database run different batches and never the same one; a batch
whose gateway died is picked up once its lease lapses (at once by the same gateway name
after a restart). ``concurrency`` bounds this gateway's batch lines in flight; the fair
queue's ``batch`` band decides when each reaches a replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy import or_, select, update

from lingyun.batch.files import FileStore
from lingyun.batch.job import BatchJob
from lingyun.gateway.pipeline import Gateway
from lingyun.store.batches import TERMINAL, Batch
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
    ) -> None:
        self.db, self.files, self.gateway = db, files, gateway
        self.owner = owner
        self.slots = asyncio.Semaphore(concurrency)
        self.poll_s = poll_s
        self.lease_s = lease_s
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="batch-runner")

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
            try:
                await self._renew()
                for batch_id in await self._claim():
                    self._jobs[batch_id] = asyncio.create_task(
                        self._run(batch_id), name=f"batch-{batch_id}"
                    )
            except Exception:
                logger.exception("batch runner pass failed; retrying")
            await asyncio.sleep(self.poll_s)

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
            ids = (
                await s.scalars(
                    select(Batch.id)
                    .where(Batch.status.not_in(TERMINAL), free)
                    .order_by(Batch.created_at)
                )
            ).all()
            claimed = []
            for batch_id in ids:
                if batch_id in self._jobs:
                    continue
                result = await s.execute(
                    update(Batch)
                    .where(Batch.id == batch_id, Batch.status.not_in(TERMINAL), free)
                    .values(owner=self.owner, lease_until=now + timedelta(seconds=self.lease_s))
                )
                if getattr(result, "rowcount", 0):
                    claimed.append(batch_id)
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
        """On a clean stop, let another gateway take over at once."""
        async with self.db.session() as s:
            await s.execute(
                update(Batch)
                .where(Batch.owner == self.owner, Batch.status.not_in(TERMINAL))
                .values(lease_until=utcnow())
            )
            await s.commit()

    async def key_info(self, key_id: str) -> KeyInfo | None:
        """The batch's key as the gateway would see it; None once revoked or expired."""
        return await TenancyService(self.db).live_key(key_id)
