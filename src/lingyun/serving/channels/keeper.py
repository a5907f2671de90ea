"""The channels' background task: probes, operator overrides, audit events, the state table.

One task per gateway, started and stopped by the app's lifespan. Each tick it

* probes every open channel whose cooldown is over (half-open; closed again if it answers),
* writes each breaker transition as an audit event (``channel.open``, ``channel.closed`` ...,
  actor ``system``) and counts it for metrics (``transitions`` per channel),
* applies disables/enables an operator stored (``service.py``), read again only when the
  change feed's ``channels`` topic moves (a trigger bumps it on ``disabled``), and
* writes the channels' live state to ``upstream_channels`` when it changed, at most once a
  ``SYNC_S``.

An idle gateway whose channels are quiet touches the database not at all. Nothing here is on
a request's path; a failing database only delays the bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lingyun.lifecycle import supervised
from lingyun.serving.channels.breaker import ChannelState, Transition
from lingyun.serving.channels.channels import Channel
from lingyun.serving.channels.probe import probe
from lingyun.serving.channels.registry import ChannelRegistry
from lingyun.store.changes import ChangeFeed
from lingyun.store.channels import ChannelRow
from lingyun.store.db import Database
from lingyun.store.models import utcnow
from lingyun.tenancy.audit import SYSTEM_ACTOR, record

logger = logging.getLogger(__name__)

TICK_S = 0.25
# At most this often, live state that changed is written.
SYNC_S = 1.0


class ChannelKeeper:
    def __init__(
        self, registry: ChannelRegistry, db: Database, feed: ChangeFeed | None = None
    ) -> None:
        self.registry = registry
        self.db = db
        self.feed = feed  # None: overrides are read on every sync
        self._overrides_moved = True  # read them at the first sync
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._probing: set[asyncio.Task[None]] = set()
        self._written: dict[tuple[str, str], dict[str, object]] = {}

    def start(self) -> None:
        self._session = aiohttp.ClientSession(trust_env=False)
        if self.feed is not None:
            self.feed.subscribe("channels", self._overrides_changed)
        self._task = supervised("channel-keeper", self._run)

    async def _overrides_changed(self) -> None:
        self._overrides_moved = True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._probing):
            task.cancel()
        if self._probing:
            await asyncio.wait(self._probing)
        with contextlib.suppress(Exception):
            await self.sync()  # the last transitions reach the audit log
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sync = 0.0
        while True:
            self.start_probes()
            due = loop.time() >= next_sync and (self._overrides_moved or self._stale())
            if self.registry.pending or due:
                next_sync = loop.time() + SYNC_S
                try:
                    await self.sync()
                except Exception:
                    self._overrides_moved = True  # read them again at the retry
                    logger.exception("channel bookkeeping failed; retrying")
            await asyncio.sleep(TICK_S)

    def _stale(self) -> bool:
        """Whether some channel's live state differs from what was last written (memory)."""
        if self.feed is None:
            return True
        return any(
            self._written.get((c.deployment, c.name)) != c.snapshot()
            for c in self.registry.channels()
        )

    def start_probes(self) -> None:
        for channel in self.registry.channels():
            if channel.replica is not None and channel.breaker.probe_due():
                channel.breaker.begin_probe()
                task = asyncio.get_running_loop().create_task(
                    self._probe(channel), name=f"probe:{channel.deployment}/{channel.name}"
                )
                self._probing.add(task)
                task.add_done_callback(self._probing.discard)

    async def _probe(self, channel: Channel) -> None:
        assert self._session is not None and channel.replica is not None
        result = await probe(self._session, channel.replica)
        channel.breaker.probe_result(result.ok, result.error)
        if result.ok:
            channel.answered(result.latency_ms)

    async def sync(self) -> None:
        pending, self.registry.pending = self.registry.pending, []
        self._overrides_moved = False  # a change from here on is read at the next sync
        channels = {(c.deployment, c.name): c for c in self.registry.channels()}
        async with self.db.session() as s, s.begin():
            for channel, t in pending:
                _audit(s, channel, t)
            rows = {
                (r.deployment, r.channel): r
                for r in (await s.scalars(select(ChannelRow))).all()
                if (r.deployment, r.channel) in channels
            }
            for key, channel in channels.items():
                row = rows.get(key)
                _apply_override(channel, row)
                snap = channel.snapshot()
                if row is not None and self._written.get(key) == snap:
                    continue
                if row is None:
                    row = ChannelRow(deployment=key[0], channel=key[1], disabled=False)
                    s.add(row)
                for name in ("state", "base_url", "model", "priority", "weight", "requests",
                             "failures", "error_rate", "latency_ms", "last_error",
                             "transitions"):  # fmt: skip
                    setattr(row, name, snap[name])
                row.updated_at = utcnow()
                self._written[key] = snap
            # transitions the overrides caused, in this same transaction
            for channel, t in self.registry.pending:
                _audit(s, channel, t)
            self.registry.pending = []


def _apply_override(channel: Channel, row: ChannelRow | None) -> None:
    if row is None:
        return
    who = row.disabled_by or "operator"
    if row.disabled and channel.state is not ChannelState.DISABLED:
        channel.breaker.disable(who)
    elif not row.disabled and channel.state is ChannelState.DISABLED:
        channel.breaker.enable("operator")


def _audit(session: AsyncSession, channel: Channel, t: Transition) -> None:
    record(
        session,
        SYSTEM_ACTOR,
        f"channel.{t.new.value}",
        target_type="channel",
        target_id=f"{channel.deployment}/{channel.name}",
        details={"from": t.old.value, "to": t.new.value, "reason": t.reason},
    )
