"""What tenancy runs inside ``lingyun serve``: the grant cache, reloaded by the change feed,
and the batched writer of keys' ``last_used_at``.

Both keep the request path off the database: the gateway reads grants from memory and only
notes which keys it saw. Grants reload when the feed's ``grants`` topic moves (an idle
gateway reads nothing); used keys are written every few seconds, and only if there were any.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from lingyun.lifecycle import periodic, supervised
from lingyun.store.access import ModelGrant
from lingyun.store.changes import ChangeFeed
from lingyun.store.db import Database
from lingyun.store.models import ApiKey, utcnow
from lingyun.tenancy.grants import GrantCache, load_snapshot
from lingyun.tenancy.service import KeyInfo

logger = logging.getLogger(__name__)


class TenancyRuntime:
    def __init__(
        self, db: Database, feed: ChangeFeed | None = None, touch_every_s: float = 2.0
    ) -> None:
        self.db = db
        self.access = GrantCache()
        self._feed = feed  # None: grants reload only when refresh_grants() is called
        self._touch_every = touch_every_s
        self._fingerprint: tuple[Any, ...] | None = None
        self._used: dict[str, datetime] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.refresh_grants()
        if self._feed is not None:
            self._feed.subscribe("grants", self.reload_grants)
        self._tasks = [
            supervised(
                "key-used", lambda: periodic("key-used", self._touch_every, self.flush_used)
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.flush_used()

    def key_used(self, key: KeyInfo) -> None:
        """Called by the authenticator on every accepted request: memory only."""
        self._used[key.key_id] = utcnow()

    async def reload_grants(self) -> None:
        """The feed says grants changed: read them all (a small table)."""
        self.access.snapshot = await load_snapshot(self.db)

    async def refresh_grants(self) -> None:
        """Reload grants when they changed (a cheap count/max query otherwise)."""
        async with self.db.session() as s:
            row = (
                await s.execute(select(func.count(ModelGrant.id), func.max(ModelGrant.created_at)))
            ).one()
        fingerprint = tuple(row)
        if fingerprint != self._fingerprint:
            self.access.snapshot = await load_snapshot(self.db)
            self._fingerprint = fingerprint

    async def flush_used(self) -> None:
        if not self._used:
            return
        used, self._used = self._used, {}
        # One statement per distinct second keeps this a handful of UPDATEs per flush.
        by_time: dict[datetime, list[str]] = {}
        for key_id, at in used.items():
            by_time.setdefault(at.replace(microsecond=0), []).append(key_id)
        async with self.db.session() as s:
            for at, ids in by_time.items():
                await s.execute(update(ApiKey).where(ApiKey.id.in_(ids)).values(last_used_at=at))
            await s.commit()
