"""Limits shared by the worker processes of one ``lingyun serve --workers N``, without Redis.

Per-process windows (``buckets.py``) would admit N times a rule's limit, one allowance per
worker. This limiter keeps the same windows (exact sliding 60-second logs, the per-second
bucket, in-flight slots; semantics as ``buckets.py`` and ``redis_limiter.py``) in one SQLite
file in the data dir, and makes each decision in one small ``BEGIN IMMEDIATE`` transaction:
checks and commits of every rule happen under the file's write lock, so no two workers can
both take the last unit. The transaction is tens of microseconds and runs inline on the
event loop (a thread hop would cost more than the work); a worker waits for the lock at most
while another holds it for one decision.

Invariants: the clock is ``time.monotonic`` (one clock for every process on the machine);
amounts are those of ``Charge``; in-flight rows carry their worker's owner name and a lease
deadline, and a worker deletes its own rows when it starts (a killed worker's slots come
back when it is restarted, or when their lease ends). The state is not durable (synchronous
off): the supervisor starts each run with a fresh file, as a single process starts with
fresh windows. Only requests with matching rules reach it; the fair queue (VTC) stays per
worker.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lingyun.admission.limits import (
    WINDOW_S,
    Charge,
    Dimension,
    LimitRule,
    Outcome,
    Refusal,
    RuleState,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hits (rule TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
  at REAL NOT NULL, amount INTEGER NOT NULL, PRIMARY KEY (rule, kind, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hits_by_time ON hits (rule, kind, at);
CREATE TABLE IF NOT EXISTS buckets (rule TEXT PRIMARY KEY, tokens REAL NOT NULL,
  stamp REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inflight (rule TEXT NOT NULL, id TEXT NOT NULL,
  owner TEXT NOT NULL, until REAL NOT NULL, PRIMARY KEY (rule, id)) WITHOUT ROWID;
"""
_REQ, _TOK = "r", "t"


class SharedLimiter:
    """A ``Limiter`` over one SQLite file that every worker of a gateway opens."""

    def __init__(
        self,
        path: Path,
        *,
        owner: str,
        lease_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owner, self.lease_s, self.clock = owner, lease_s, clock
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are the explicit BEGIN IMMEDIATE of _tx.
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(_SCHEMA)  # outside _tx: executescript commits by itself
        with self._tx() as cur:
            cur.execute("DELETE FROM inflight WHERE owner = ?", (owner,))

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except Exception:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    async def acquire(self, charge: Charge) -> Outcome:
        now = self.clock()
        with self._tx() as cur:
            blocked: list[Refusal] = []
            buckets: dict[str, float] = {}
            for rule in charge.rules:
                blocked.extend(self._blocked(cur, rule, charge.tokens, now, buckets))
            if not blocked:
                self._commit(cur, charge, now, buckets)
            states = tuple(_state(cur, rule, now) for rule in charge.rules)
        refusal = max(blocked, key=lambda b: b.retry_after_s) if blocked else None
        return Outcome(refusal, states)

    def _blocked(
        self,
        cur: sqlite3.Cursor,
        rule: LimitRule,
        cost: int,
        now: float,
        buckets: dict[str, float],
    ) -> list[Refusal]:
        horizon = now - WINDOW_S
        waits: list[tuple[Dimension, float]] = []
        if rule.rpm is not None:
            cur.execute("DELETE FROM hits WHERE rule = ? AND kind = ? AND at <= ?",
                        (rule.id, _REQ, horizon))  # fmt: skip
            used = _count(cur, rule.id)
            if used + 1 > rule.rpm:
                waits.append(("requests", _request_wait(cur, rule, used, now)))
            capacity = rule.burst_capacity()
            if capacity is not None:
                rate = rule.rpm / WINDOW_S
                row = cur.execute(
                    "SELECT tokens, stamp FROM buckets WHERE rule = ?", (rule.id,)
                ).fetchone()
                tokens = float(capacity)
                if row is not None:
                    tokens = min(capacity, row[0] + max(0.0, now - row[1]) * rate)
                buckets[rule.id] = tokens
                if tokens < 1:
                    waits.append(("requests_per_second", (1 - tokens) / rate if rate else WINDOW_S))
        if rule.tpm is not None:
            cur.execute("DELETE FROM hits WHERE rule = ? AND kind = ? AND at <= ?",
                        (rule.id, _TOK, horizon))  # fmt: skip
            excess = _tokens(cur, rule.id) + cost - rule.tpm
            if excess > 0:
                waits.append(("tokens", _token_wait(cur, rule, cost, excess, now)))
        if rule.concurrency is not None:
            cur.execute("DELETE FROM inflight WHERE rule = ? AND until <= ?", (rule.id, now))
            held = cur.execute(
                "SELECT COUNT(*) FROM inflight WHERE rule = ?", (rule.id,)
            ).fetchone()[0]
            if held >= rule.concurrency:
                waits.append(("concurrency", 1.0))
        return [Refusal(rule, dim, wait) for dim, wait in waits if wait > 0]

    def _commit(
        self, cur: sqlite3.Cursor, charge: Charge, now: float, buckets: dict[str, float]
    ) -> None:
        rid = charge.request_id
        for rule in charge.rules:
            if rule.rpm is not None:
                cur.execute("INSERT OR REPLACE INTO hits VALUES (?, ?, ?, ?, 1)",
                            (rule.id, _REQ, rid, now))  # fmt: skip
                if rule.id in buckets:
                    cur.execute("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)",
                                (rule.id, buckets[rule.id] - 1, now))  # fmt: skip
            if rule.tpm is not None:
                cur.execute("INSERT OR REPLACE INTO hits VALUES (?, ?, ?, ?, ?)",
                            (rule.id, _TOK, rid, now, charge.tokens))  # fmt: skip
            if rule.concurrency is not None:
                cur.execute("INSERT OR REPLACE INTO inflight VALUES (?, ?, ?, ?)",
                            (rule.id, rid, self.owner, now + self.lease_s))  # fmt: skip

    async def release(self, charge: Charge, used_tokens: int) -> None:
        with self._tx() as cur:
            for rule in charge.rules:
                if rule.tpm is not None:
                    cur.execute("UPDATE hits SET amount = ? WHERE rule = ? AND kind = ? AND id = ?",
                                (used_tokens, rule.id, _TOK, charge.request_id))  # fmt: skip
                if rule.concurrency is not None:
                    cur.execute("DELETE FROM inflight WHERE rule = ? AND id = ?",
                                (rule.id, charge.request_id))  # fmt: skip

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the windows of rules that no longer exist (every worker agrees soon after)."""
        wanted = set(keep)
        with self._tx() as cur:
            for table in ("hits", "buckets", "inflight"):
                gone = [r for (r,) in cur.execute(f"SELECT DISTINCT rule FROM {table}")
                        if r not in wanted]  # fmt: skip
                cur.executemany(f"DELETE FROM {table} WHERE rule = ?", [(r,) for r in gone])

    async def close(self) -> None:
        self._db.close()


def _count(cur: sqlite3.Cursor, rule_id: str) -> int:
    row = cur.execute(
        "SELECT COUNT(*) FROM hits WHERE rule = ? AND kind = ?", (rule_id, _REQ)
    ).fetchone()
    return int(row[0])


def _tokens(cur: sqlite3.Cursor, rule_id: str) -> int:
    row = cur.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM hits WHERE rule = ? AND kind = ?", (rule_id, _TOK)
    ).fetchone()
    return int(row[0])


def _request_wait(cur: sqlite3.Cursor, rule: LimitRule, used: int, now: float) -> float:
    """Until the entry whose leaving makes room for one more has left the window."""
    if not rule.rpm:
        return WINDOW_S
    row = cur.execute(
        "SELECT at FROM hits WHERE rule = ? AND kind = ? ORDER BY at LIMIT 1 OFFSET ?",
        (rule.id, _REQ, used - rule.rpm),
    ).fetchone()
    return WINDOW_S if row is None else float(row[0]) + WINDOW_S - now


def _token_wait(cur: sqlite3.Cursor, rule: LimitRule, cost: int, excess: int, now: float) -> float:
    if rule.tpm is None or cost > rule.tpm:
        return WINDOW_S
    rows = cur.execute(
        "SELECT at, amount FROM hits WHERE rule = ? AND kind = ? ORDER BY at", (rule.id, _TOK)
    )
    for at, amount in rows:
        excess -= amount
        if excess <= 0:
            return float(at) + WINDOW_S - now
    return WINDOW_S


def _state(cur: sqlite3.Cursor, rule: LimitRule, now: float) -> RuleState:
    def last(kind: str) -> float:
        row = cur.execute(
            "SELECT MAX(at) FROM hits WHERE rule = ? AND kind = ?", (rule.id, kind)
        ).fetchone()
        return 0.0 if row[0] is None else float(row[0]) + WINDOW_S - now

    return RuleState(
        requests_remaining=rule.rpm - _count(cur, rule.id) if rule.rpm is not None else None,
        requests_reset_s=last(_REQ) if rule.rpm is not None else 0.0,
        tokens_remaining=rule.tpm - _tokens(cur, rule.id) if rule.tpm is not None else None,
        tokens_reset_s=last(_TOK) if rule.tpm is not None else 0.0,
    )
