"""A per-address rate limit on the control plane (``/admin``, ``/console``, ``/health``).

Inference routes (``/v1``) are limited per tenant, project and key by the rules operators
set (``admission/``), and a flood of made-up keys there costs memory only (the key cache's
negative side). The control plane has no tenant to charge before a login, so each client
address gets a token bucket: ``control_rate_per_s`` sustained, ``control_burst`` at once;
past it, a 429 ``rate_limit_exceeded`` with Retry-After. The buckets live in a bounded LRU,
so a flood of addresses costs a fixed amount of memory. Failed sign-ins have their own,
tighter limit (``console/security.py``'s ``LoginLimiter``, for the console and the API).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from lingyun.errors import RateLimitError
from lingyun.protocol.errors import error_response

CONTROL_PREFIXES = ("/admin", "/console")
CONTROL_PATHS = frozenset({"/health"})
MAX_ADDRESSES = 10_000


class AddressBuckets:
    """Token buckets by client address; ``take`` answers 0 or the seconds to wait."""

    def __init__(self, rate_per_s: float, burst: int, max_addresses: int = MAX_ADDRESSES):
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, address: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate if self.rate > 0 else 60.0
        self._buckets[address] = (tokens, now)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        return wait


class ControlRateMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        buckets: AddressBuckets,
        prefixes: Sequence[str] = CONTROL_PREFIXES,
        paths: frozenset[str] = CONTROL_PATHS,
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.prefixes = tuple(prefixes)
        self.paths = paths

    def _limited(self, path: str) -> bool:
        return path in self.paths or path.startswith(self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._limited(scope["path"]):
            client = scope.get("client")
            wait = self.buckets.take(client[0] if client else "unknown")
            if wait > 0:
                err = RateLimitError(
                    "Too many requests from this address; slow down.",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
                await error_response(err)(scope, receive, send)
                return
        await self.app(scope, receive, send)
