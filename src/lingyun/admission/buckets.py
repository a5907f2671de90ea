"""In-process limiter: exact sliding windows, per-second token buckets, in-flight counters.

All state lives on the gateway's event loop; ``acquire`` checks every rule and then commits
every rule with no ``await`` in between, so concurrent requests cannot slip past a limit.
One gateway process only: several processes share limits through ``RedisLimiter``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lingyun.admission.limits import (
    WINDOW_S,
    Charge,
    Dimension,
    LimitRule,
    Outcome,
    Refusal,
    RuleState,
)


class SlidingWindow:
    """Exact sliding log of amounts admitted in the last ``window_s`` seconds.

    An entry's amount may be corrected (``adjust``) until it leaves the window, which is how a
    token reservation becomes the real usage.
    """

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._entries: deque[_Entry] = deque()
        self._by_id: dict[str, _Entry] = {}
        self.total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def expire(self, now: float) -> None:
        horizon = now - self.window_s
        while self._entries and self._entries[0].at <= horizon:
            entry = self._entries.popleft()
            self.total -= entry.amount
            self._by_id.pop(entry.id, None)

    def used(self, now: float) -> int:
        self.expire(now)
        return self.total

    def add(self, entry_id: str, amount: int, now: float) -> None:
        entry = _Entry(entry_id, now, amount)
        self._entries.append(entry)
        self._by_id[entry_id] = entry
        self.total += amount

    def adjust(self, entry_id: str, amount: int) -> None:
        """Set an entry's amount; nothing happens once it has left the window."""
        entry = self._by_id.get(entry_id)
        if entry is not None:
            self.total += amount - entry.amount
            entry.amount = amount

    def wait_for(self, amount: int, limit: int, now: float) -> float:
        """Seconds until ``amount`` more fits under ``limit`` (0 if it fits now)."""
        self.expire(now)
        excess = self.total + amount - limit
        if excess <= 0:
            return 0.0
        if amount > limit:
            return self.window_s
        for entry in self._entries:
            excess -= entry.amount
            if excess <= 0:
                return entry.at + self.window_s - now
        return self.window_s

    def reset_after(self, now: float) -> float:
        """Seconds until everything now in the window has left it."""
        self.expire(now)
        return self._entries[-1].at + self.window_s - now if self._entries else 0.0


@dataclass
class _Entry:
    id: str
    at: float
    amount: int


class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity``; starts full."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float, now: float) -> float:
        self.refill(now)
        missing = amount - self.tokens
        if missing <= 0:
            return 0.0
        return missing / self.rate if self.rate > 0 else WINDOW_S

    def take(self, amount: float) -> None:
        self.tokens -= amount


@dataclass
class _RuleCounters:
    requests: SlidingWindow = field(default_factory=SlidingWindow)
    tokens: SlidingWindow = field(default_factory=SlidingWindow)
    bucket: TokenBucket | None = None
    inflight: set[str] = field(default_factory=set)


class LocalLimiter:
    """Limits for one gateway process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._counters: dict[str, _RuleCounters] = {}

    def _for(self, rule: LimitRule, now: float) -> _RuleCounters:
        counters = self._counters.get(rule.id)
        if counters is None:
            counters = self._counters[rule.id] = _RuleCounters()
        capacity = rule.burst_capacity()
        if capacity is None or rule.rpm is None:
            counters.bucket = None
        elif counters.bucket is None:
            counters.bucket = TokenBucket(rule.rpm / WINDOW_S, capacity, now)
        else:  # the rule may have changed since the bucket was made
            counters.bucket.rate, counters.bucket.capacity = rule.rpm / WINDOW_S, capacity
        return counters

    async def acquire(self, charge: Charge) -> Outcome:
        now = self.clock()
        blocked: list[Refusal] = []
        pending: list[tuple[LimitRule, _RuleCounters]] = []
        for rule in charge.rules:
            c = self._for(rule, now)
            pending.append((rule, c))
            blocked.extend(_blocked(rule, c, charge.tokens, now))
        if not blocked:
            for rule, c in pending:
                if rule.rpm is not None:
                    c.requests.add(charge.request_id, 1, now)
                    if c.bucket is not None:
                        c.bucket.take(1)
                if rule.tpm is not None:
                    c.tokens.add(charge.request_id, charge.tokens, now)
                if rule.concurrency is not None:
                    c.inflight.add(charge.request_id)
        refusal = max(blocked, key=lambda b: b.retry_after_s) if blocked else None
        return Outcome(refusal, tuple(_state(rule, c, now) for rule, c in pending))

    async def release(self, charge: Charge, used_tokens: int) -> None:
        for rule in charge.rules:
            c = self._counters.get(rule.id)
            if c is None:
                continue
            c.tokens.adjust(charge.request_id, used_tokens)
            c.inflight.discard(charge.request_id)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the counters of rules that no longer exist."""
        wanted = set(keep)
        for rule_id in [r for r in self._counters if r not in wanted]:
            del self._counters[rule_id]

    async def close(self) -> None:
        return None


def _blocked(rule: LimitRule, c: _RuleCounters, tokens: int, now: float) -> list[Refusal]:
    waits: list[tuple[Dimension, float]] = []
    if rule.rpm is not None:
        waits.append(("requests", c.requests.wait_for(1, rule.rpm, now)))
        if c.bucket is not None:
            waits.append(("requests_per_second", c.bucket.wait_for(1, now)))
    if rule.tpm is not None:
        waits.append(("tokens", c.tokens.wait_for(tokens, rule.tpm, now)))
    if rule.concurrency is not None and len(c.inflight) >= rule.concurrency:
        waits.append(("concurrency", 1.0))
    return [Refusal(rule, dim, wait) for dim, wait in waits if wait > 0]


def _state(rule: LimitRule, c: _RuleCounters, now: float) -> RuleState:
    return RuleState(
        requests_remaining=rule.rpm - c.requests.used(now) if rule.rpm is not None else None,
        requests_reset_s=c.requests.reset_after(now),
        tokens_remaining=rule.tpm - c.tokens.used(now) if rule.tpm is not None else None,
        tokens_reset_s=c.tokens.reset_after(now),
    )
