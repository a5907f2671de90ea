"""Prompt logging: prompt and completion text, kept only for projects that turn it on.

Off by default and per project (``projects.prompt_log_retention_s``, set by the project's,
its tenant's or the platform's admins: ``lingyun projects prompt-logging``, or
``PUT /admin/v1/projects/{id}/prompt-logging``).
The authenticated key says whether its project logs (``KeyInfo.prompt_log_retention_s``),
so a request of any other project carries no ``Transcript`` and its text goes nowhere: not
in the request log, the usage rows, the metrics or any file. A logging project's rows are
written in batches beside the usage rows and deleted by ``purge`` once ``expires_at`` passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from lingyun.metering.usage_writer import UsageWriter
from lingyun.store.db import Database
from lingyun.store.models import utcnow
from lingyun.store.prompts import PromptRecord, erase

if TYPE_CHECKING:
    from lingyun.gateway.context import RequestContext

logger = logging.getLogger(__name__)


class PromptLog:
    """Writes transcripts (batched) and purges expired ones on a timer."""

    def __init__(self, db: Database, purge_interval_s: float) -> None:
        self.db = db
        self.purge_interval_s = purge_interval_s
        self.writer = UsageWriter(db, table=PromptRecord, name="prompt-writer")
        self._purger: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.writer.start()
        self._purger = asyncio.create_task(self._purge_forever(), name="prompt-purger")

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await self.writer.stop()

    def submit(self, ctx: RequestContext) -> None:
        t, key = ctx.transcript, ctx.key
        if t is None or key is None:
            return
        now = utcnow()
        self.writer.submit(
            {
                "request_id": ctx.request_id,
                "tenant_id": key.tenant_id,
                "project_id": key.project_id,
                "model": ctx.model[:128],
                "created_at": now,
                "expires_at": now + timedelta(seconds=t.retention_s),
                "prompt": t.prompt,
                "completion": "".join(t.parts),
            }
        )

    async def purge(self) -> int:
        """Erase every row past its expiry; answers how many went. A read first, so a
        gateway with nothing due (most, most of the time) writes nothing."""
        due = PromptRecord.expires_at <= utcnow()
        async with self.db.session() as s:
            if await s.scalar(select(PromptRecord.id).where(due).limit(1)) is None:
                return 0
        return await erase(self.db, due)

    async def _purge_forever(self) -> None:
        while True:
            await asyncio.sleep(self.purge_interval_s)
            try:
                if gone := await self.purge():
                    logger.info("purged %d expired prompt log rows", gone)
            except Exception:
                logger.exception("prompt log purge failed; retrying next beat")
