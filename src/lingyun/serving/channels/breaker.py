"""A circuit breaker per upstream channel: when a channel may carry traffic, and why not.

States and who moves them::

    closed ──(401/403/quota body: at once)──────────────▶ open
    closed ──(error rate > threshold over the window)───▶ open
    open ────(cooldown over; the prober takes it)───────▶ half_open
    half_open ─(probe answered)─────────────────────────▶ closed
    half_open ─(probe failed; cooldown doubles)─────────▶ open
    any ─────(operator: disable)────────────────────────▶ disabled
    disabled ─(operator: enable)────────────────────────▶ closed

Only ``closed`` channels are picked, for a first try and for a retry alike: live requests never
serve as probes (that is how One API picked dead channels on retry). An operator-caused fault
(our key refused, our account out of quota) opens at once; anything else needs a rate over a
window of at least ``min_requests`` outcomes, so one stray 500 does not take a channel out
(New API's complaint). Client mistakes (400s) count as successes: the channel answered.

All state lives on the event loop; no locks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from lingyun.errors import LingyunError

# Codes our dialects give faults the operator must fix (engines/upstream/base.py).
FATAL_CODES = frozenset(
    {"upstream_auth_failed", "upstream_permission_denied", "upstream_quota_exhausted"}
)


class ChannelState(StrEnum):
    """Stored in the channel table and the audit log: never rename a value."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DISABLED = "disabled"


@dataclass(frozen=True)
class BreakerSettings:
    """Thresholds; a deployment's ``breaker:`` mapping overrides any of them."""

    # Open when more than this share of the last ``window`` outcomes failed ...
    error_rate: float = 0.2
    window: int = 20
    # ... once at least this many outcomes are in the window.
    min_requests: int = 10
    # Outcomes older than this leave the window.
    window_s: float = 60.0
    # First wait before a probe; doubled after each failed probe, up to the maximum.
    cooldown_s: float = 10.0
    max_cooldown_s: float = 300.0

    @classmethod
    def from_mapping(cls, raw: dict[str, float]) -> BreakerSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown breaker setting(s) {unknown}; choose from {sorted(known)}")
        values: dict[str, Any] = dict(raw)
        for name in ("window", "min_requests"):
            if name in values:
                values[name] = int(values[name])
        return cls(**values)


def is_failure(err: LingyunError) -> bool:
    """Does ``err`` say the channel (not the client's request) failed?"""
    return err.code in FATAL_CODES or err.status_code >= 500 or err.status_code == 429


@dataclass(frozen=True)
class Transition:
    old: ChannelState
    new: ChannelState
    reason: str
    at: float  # wall-clock seconds


class Breaker:
    """One channel's state and the outcomes it is judged by."""

    def __init__(
        self,
        settings: BreakerSettings,
        on_change: Callable[[Transition], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.state = ChannelState.CLOSED
        self.last_error: str | None = None
        self.opened_at: float | None = None
        self.transitions = 0
        self._on_change = on_change
        self._clock = clock
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._cooldown = settings.cooldown_s
        self._probe_at = 0.0

    # -- outcomes of live requests -----------------------------------------------------

    def success(self) -> None:
        self._push(ok=True)

    def failure(self, err: LingyunError) -> None:
        self.last_error = f"{err.status_code} {err.code}: {err.message}"[:500]
        if self.state is not ChannelState.CLOSED:
            return
        if err.code in FATAL_CODES:
            self._move(ChannelState.OPEN, f"{err.code} (HTTP {err.status_code})")
            return
        self._push(ok=False)
        rate, n = self.error_rate()
        s = self.settings
        if n >= s.min_requests and rate > s.error_rate:
            self._move(ChannelState.OPEN, f"error rate {rate:.0%} over the last {n} requests")

    def error_rate(self) -> tuple[float, int]:
        self._trim()
        n = len(self._outcomes)
        if n == 0:
            return 0.0, 0
        return sum(1 for _, ok in self._outcomes if not ok) / n, n

    # -- the prober and the operator ---------------------------------------------------

    def probe_due(self) -> bool:
        return self.state is ChannelState.OPEN and self._clock() >= self._probe_at

    def begin_probe(self) -> None:
        self._move(ChannelState.HALF_OPEN, "probing")

    def probe_result(self, ok: bool, error: str | None = None) -> None:
        if self.state is not ChannelState.HALF_OPEN:
            return  # the operator acted meanwhile
        if ok:
            self._outcomes.clear()
            self._cooldown = self.settings.cooldown_s
            self._move(ChannelState.CLOSED, "probe succeeded")
            return
        self.last_error = error or self.last_error
        self._cooldown = min(self._cooldown * 2, self.settings.max_cooldown_s)
        self._move(ChannelState.OPEN, f"probe failed: {error}"[:300])

    def disable(self, who: str) -> None:
        if self.state is not ChannelState.DISABLED:
            self._move(ChannelState.DISABLED, f"disabled by {who}")

    def enable(self, who: str) -> None:
        if self.state is ChannelState.DISABLED:
            self._outcomes.clear()
            self._cooldown = self.settings.cooldown_s
            self._move(ChannelState.CLOSED, f"enabled by {who}")

    # -- internals -----------------------------------------------------------------------

    def _push(self, *, ok: bool) -> None:
        self._outcomes.append((self._clock(), ok))
        while len(self._outcomes) > self.settings.window:
            self._outcomes.popleft()

    def _trim(self) -> None:
        horizon = self._clock() - self.settings.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()

    def _move(self, new: ChannelState, reason: str) -> None:
        old = self.state
        self.state = new
        self.transitions += 1
        if new is ChannelState.OPEN:
            self.opened_at = time.time()
            self._probe_at = self._clock() + self._cooldown
        self._on_change(Transition(old, new, reason, time.time()))
