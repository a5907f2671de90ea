"""Failover: which failures move a request elsewhere, and a budget so that retries cannot
storm a struggling deployment.

A request may move (to another replica, or to the deployment's next fallback model) only
while nothing has reached the client. A connection that fails before the replica answers
moves to a sibling replica (at most ``MAX_CONNECT_ATTEMPTS`` tries per request): the dead
replica's load just shifts, it does not multiply. Upstream 429s and 5xx move the request to
a fallback model, which spends from the failing deployment's ``RetryBudget``, so a struggling
deployment's failures cannot double the traffic. The tenant's own limits and balance never
move a request (a fallback would just spend elsewhere what the operator capped).
"""

from __future__ import annotations

import time

from lingyun.errors import InsufficientQuotaError, LingyunError
from lingyun.gateway.context import RequestContext


def falls_back(err: LingyunError, ctx: RequestContext) -> bool:
    if isinstance(err, InsufficientQuotaError):
        return False
    if err.status_code >= 500:
        return True
    # a 429 from the engine or cloud, not from our own admission
    return err.status_code == 429 and ctx.replica is not None


class RetryBudget:
    """Retries may add at most ``ratio`` of a deployment's traffic, plus ``min_per_s``.

    Each request deposits ``ratio`` tokens; each retry withdraws one. A trickle of
    ``min_per_s`` keeps retries possible at low traffic, and a deployment starts with one
    token, so its first failure can always move. (Finagle's and Envoy's shape.)
    """

    def __init__(self, ratio: float = 0.2, min_per_s: float = 5.0, cap: float = 100.0) -> None:
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.cap = cap
        self._tokens: dict[str, float] = {}
        self._stamp: dict[str, float] = {}

    def _refill(self, deployment: str) -> float:
        now = time.monotonic()
        last = self._stamp.get(deployment, now)
        self._stamp[deployment] = now
        start = max(1.0, self.min_per_s)
        tokens = self._tokens.get(deployment, start) + (now - last) * self.min_per_s
        return min(tokens, self.cap)

    def deposit(self, deployment: str) -> None:
        self._tokens[deployment] = min(self._refill(deployment) + self.ratio, self.cap)

    def withdraw(self, deployment: str) -> bool:
        tokens = self._refill(deployment)
        if tokens < 1:
            self._tokens[deployment] = tokens
            return False
        self._tokens[deployment] = tokens - 1
        return True
