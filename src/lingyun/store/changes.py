"""The read side of the change feed: parts subscribe to a topic and reload only when it moved.

Writers need do nothing: triggers bump ``revisions`` (``store/revisions.py``). Each gateway
holds one watcher connection of its own, outside the SQLAlchemy pool:

* PostgreSQL: ``LISTEN lingyun_changes`` on an asyncpg connection. A commit anywhere (this
  process, another gateway, the CLI) wakes it within milliseconds; between changes it costs
  nothing, not even a statement. A lost connection is noticed by asyncpg's termination
  callback; the watcher reconnects with a backoff and then re-reads ``revisions``, so what
  changed while it was away is applied too.
* SQLite has no notifications. Every ``tick_s`` the watcher asks ``PRAGMA data_version`` on
  its held connection, which changes only when another connection committed: a read of the
  WAL index in shared memory, microseconds, no statement through the pool and no write. Only
  then does it read the (tiny) ``revisions`` table. Commits of this process's other
  connections count as "another connection", so a local change applies at the next tick too.

Either way a change reaches every gateway within ``tick_s`` plus the subscriber's reload
(``TICK_S`` = 0.5 s keeps that under a second). A subscriber's reload that fails is retried at
the next tick, keeping the values it had. ``ticks`` counts watcher beats, so tests wait on
beats, not on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
from sqlalchemy.engine import make_url

from lingyun.lifecycle import supervised
from lingyun.store.db import Database
from lingyun.store.revisions import CHANNEL, TOPICS

logger = logging.getLogger(__name__)

TICK_S = 0.5
RECONNECT_S = (0.5, 10.0)  # first and longest wait before the watcher reconnects
_READ = "SELECT topic, revision FROM revisions"

Reload = Callable[[], Awaitable[object]]
# What a watcher connection raises when the database went away (it reconnects).
_LOST = (OSError, sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)


class _Source(Protocol):
    @property
    def connected(self) -> bool: ...
    async def open(self) -> None: ...
    async def revisions(self) -> dict[str, int]: ...
    async def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s``; True when something may have changed."""
        ...

    async def close(self) -> None: ...


class ChangeFeed:
    def __init__(self, db: Database, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self.ticks = 0
        self._source: _Source = _SqliteSource(db.url) if db.is_sqlite else _PgSource(db.url)
        self._subscribers: dict[str, list[Reload]] = {}
        self._seen: dict[str, int] = {}
        self._failed: set[str] = set()  # topics whose reload failed: retried next tick
        self._beat = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, topic: str, reload: Reload) -> None:
        """Call ``reload`` whenever ``topic`` changes (after ``start``'s baseline)."""
        if topic not in TOPICS:
            raise ValueError(f"unknown topic {topic!r}; topics are {sorted(TOPICS)}")
        self._subscribers.setdefault(topic, []).append(reload)

    async def start(self) -> None:
        """Connect and take the baseline. Start this before the parts load what they
        subscribe to: a change between baseline and their load is applied twice, never
        missed."""
        await self._source.open()
        self._seen = await self._source.revisions()

    def follow(self) -> None:
        """Begin calling subscribers. Started after the parts they reload, and stopped
        (``unfollow``) before those parts stop, so no reload reaches a stopped part."""
        self._task = supervised("change-feed", self._run)

    async def unfollow(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def stop(self) -> None:
        await self.unfollow()
        await self._source.close()

    async def ticked(self, beats: int = 1) -> None:
        """Return once the watcher has beaten ``beats`` more times (tests' clock)."""
        target = self.ticks + beats
        async with self._beat:
            await self._beat.wait_for(lambda: self.ticks >= target)

    async def _run(self) -> None:
        wait = RECONNECT_S[0]
        while True:
            try:
                if not self._source.connected:
                    await self._source.open()
                    await self._apply(await self._source.revisions())  # what we missed
                    wait = RECONNECT_S[0]
                await self._watch()
            except _LOST as exc:
                logger.warning("change feed lost its connection (%s); again in %.1f s", exc, wait)
                await self._source.close()
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_S[1])

    async def _watch(self) -> None:
        while True:
            if await self._source.wait(self.tick_s) or self._failed:
                await self._apply(await self._source.revisions())
            self.ticks += 1
            async with self._beat:
                self._beat.notify_all()

    async def _apply(self, now: dict[str, int]) -> None:
        moved = {t for t, rev in now.items() if self._seen.get(t) != rev} | self._failed
        self._seen = now
        self._failed = set()
        for topic in sorted(moved):
            for reload in self._subscribers.get(topic, []):
                try:
                    await reload()
                except Exception:
                    logger.exception("reloading %s after a change failed; retrying", topic)
                    self._failed.add(topic)


class _SqliteSource:
    def __init__(self, url: str) -> None:
        self.path = make_url(url).database or ""
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def open(self) -> None:
        # Autocommit: no read transaction is ever left open to pin the WAL.
        self._conn = sqlite3.connect(self.path, timeout=1.0, isolation_level=None)
        self._version = self._data_version()

    def _held(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConnectionError("change feed not connected")
        return self._conn

    def _data_version(self) -> int:
        return int(self._held().execute("PRAGMA data_version").fetchone()[0])

    async def revisions(self) -> dict[str, int]:
        return {t: int(r) for t, r in self._held().execute(_READ).fetchall()}

    async def wait(self, timeout_s: float) -> bool:
        await asyncio.sleep(timeout_s)
        version = self._data_version()  # on the loop: it is cheaper than a thread hop
        changed, self._version = version != self._version, version
        return changed

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _PgSource:
    def __init__(self, url: str) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._conn: asyncpg.Connection[Any] | None = None
        self._woken = asyncio.Event()
        self._lost = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def open(self) -> None:
        self._lost.clear()
        self._conn = await asyncpg.connect(self.dsn, timeout=10)
        self._conn.add_termination_listener(lambda _conn: self._on_lost())
        await self._conn.add_listener(CHANNEL, self._on_notify)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _topic: object) -> None:
        self._woken.set()

    def _on_lost(self) -> None:
        self._lost.set()
        self._woken.set()

    async def revisions(self) -> dict[str, int]:
        if self._conn is None:
            raise ConnectionError("change feed not connected")
        return {r["topic"]: int(r["revision"]) for r in await self._conn.fetch(_READ)}

    async def wait(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout_s)
        if self._lost.is_set() or self._conn is None or self._conn.is_closed():
            raise ConnectionError("LISTEN connection closed")
        woken = self._woken.is_set()
        self._woken.clear()
        return woken

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
