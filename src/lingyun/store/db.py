"""The database engine: SQLite (WAL) by default, PostgreSQL in production; one async API.

``transaction(fn)`` runs a synchronous function inside one transaction, for hot write paths
that issue several statements (the metering journal): on SQLite it runs on a plain
``sqlite3`` connection in a dedicated thread, where a statement costs tens of microseconds
instead of the aiosqlite thread hop per statement; on PostgreSQL it runs the function in one
``run_sync`` over asyncpg.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from lingyun.store.outage import CONNECT_TIMEOUT_S, POOL_TIMEOUT_S

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # Bounded waits: a request learns of an absent database in seconds (outage.py).
            kwargs.update(
                pool_size=10,
                max_overflow=20,
                pool_pre_ping=True,
                pool_timeout=POOL_TIMEOUT_S,
                connect_args={"timeout": CONNECT_TIMEOUT_S},
            )
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin_immediate)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._sync: Engine | None = None
        self._fast: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            self._sync = _writer(parsed.set(drivername="sqlite"), _sqlite_pragmas)
            self._fast = _writer(parsed.set(drivername="sqlite"), _sqlite_pragmas_fast)
            # One thread for both: SQLite has one writer at a time anyway.
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")

    async def transaction(self, fn: Callable[[Session], T], *, durable: bool = True) -> T:
        """Run ``fn(session)`` in one transaction, committed when it returns.

        ``durable=False`` commits without waiting for the disk (SQLite ``synchronous=NORMAL``
        in WAL mode, PostgreSQL ``synchronous_commit=off``): safe against a crash of this
        process, and made safe against a power loss by the next ``sync()``. The metering
        journal uses it for its hot batches and calls ``sync()`` every second; top-ups and
        everything else stay durable at commit.
        """
        if self._sync is not None and self._fast is not None and self._thread is not None:
            engine = self._sync if durable else self._fast

            def run() -> T:
                with Session(engine, expire_on_commit=False) as s, s.begin():
                    return fn(s)

            return await asyncio.get_running_loop().run_in_executor(self._thread, run)
        async with self.sessions() as session, session.begin():
            if not durable:
                await session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            return await session.run_sync(fn)

    async def sync(self) -> None:
        """Make every commit so far durable against a power loss.

        SQLite: a passive WAL checkpoint, which fsyncs the WAL first. PostgreSQL's WAL
        writer flushes asynchronous commits within ``wal_writer_delay`` (200 ms) by itself.
        """
        await self.checkpoint("PASSIVE")

    async def checkpoint(self, mode: str) -> None:
        """SQLite: a WAL checkpoint (``PASSIVE``; ``TRUNCATE`` also empties the WAL file, so
        erased rows leave no old frames behind). Nothing to do on PostgreSQL."""
        if self._sync is None or self._thread is None:
            return
        engine = self._sync
        if mode not in ("PASSIVE", "TRUNCATE"):
            raise ValueError(f"checkpoint mode {mode!r}: use PASSIVE or TRUNCATE")

        def run() -> None:
            # On the raw connection, outside any transaction: inside one (SQLAlchemy's
            # begin event opens BEGIN IMMEDIATE) SQLite refuses it as "table is locked".
            raw = engine.raw_connection()
            try:
                raw.cursor().execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
            finally:
                raw.close()

        await asyncio.get_running_loop().run_in_executor(self._thread, run)

    def session(self) -> AsyncSession:
        return self.sessions()

    async def migrate(self) -> None:
        from lingyun.store.migrate import upgrade

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()
        for engine in (self._sync, self._fast):
            if engine is not None:
                engine.dispose()
        if self._thread is not None:
            self._thread.shutdown(wait=True)


def _writer(url: Any, pragmas: Callable[[Any, Any], None]) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", pragmas)
    event.listen(engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_begin_immediate(conn: Any) -> None:
    # Take the write lock at BEGIN: a transaction that reads balances and then writes must not
    # see another writer commit in between (SQLite would fail it with SQLITE_BUSY_SNAPSHOT).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; FULL fsyncs every commit (group commit keeps
    # that rare), so a settled charge survives power loss; busy_timeout waits for a
    # concurrent CLI instead of failing.
    # Let SQLAlchemy's "begin" event issue BEGIN itself (see _sqlite_begin_immediate).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_pragmas_fast(dbapi_conn: Any, record: Any) -> None:
    # The journal's connection: in WAL mode NORMAL commits without an fsync and stays
    # consistent; ``Database.sync`` bounds what a power loss can take.
    _sqlite_pragmas(dbapi_conn, record)
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")
