"""Failed sign-ins per account and per address: a sliding window, in this process.

One instance serves the console's sign-in form and ``/admin/v1/auth/login``, so a guesser
has one budget whichever door it knocks on. Only failures are stored.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque


class LoginLimiter:
    """At most ``per_account`` failed tries per email and ``per_ip`` per address a window."""

    def __init__(self, per_account: int = 5, per_ip: int = 20, window_s: float = 900.0) -> None:
        self.per_account = per_account
        self.per_ip = per_ip
        self.window_s = window_s
        self._fails: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()  # asking never stores: a flood of made-up emails costs nothing
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def retry_after(self, email: str, ip: str) -> float:
        """Seconds until a try is allowed again; 0 when it is allowed now."""
        now = time.monotonic()
        waits = [0.0]
        for key, limit in ((f"e:{email.strip().lower()}", self.per_account),
                           (f"i:{ip}", self.per_ip)):  # fmt: skip
            q = self._recent(key, now)
            if len(q) >= limit:
                waits.append(q[0] + self.window_s - now)
        return max(waits)

    def failed(self, email: str, ip: str) -> None:
        now = time.monotonic()
        self._fails[f"e:{email.strip().lower()}"].append(now)
        self._fails[f"i:{ip}"].append(now)

    def succeeded(self, email: str) -> None:
        self._fails.pop(f"e:{email.strip().lower()}", None)
