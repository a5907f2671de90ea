"""What ``lingyun serve --workers N`` tells each of its worker processes, and who reads it.

The supervisor (``serving/workers.py``) sets these in each worker's environment, never in
argv (``/proc/*/cmdline`` is world-readable; the settings may hold a database password):

    LINGYUN_WORKER_SLOT      0..N-1, stable across restarts of that slot: the worker's owner
                             name (journal, delivery log, serving leases) derives from it, so
                             a restarted worker replays its own delivery log
    LINGYUN_WORKER_COUNT     N
    LINGYUN_WORKER_FD        the listening socket, bound once by the supervisor and inherited
    LINGYUN_WORKER_LIMITS    the rate-limit file every worker shares when there is no Redis
                             (``admission/shared_limiter.py``)
    LINGYUN_WORKER_SETTINGS  the supervisor's resolved settings as JSON, read once and removed
    LINGYUN_WORKER_SETUP     the console's first-start setup token, one for every worker

With none of them set (``--workers 1``, the default) the gateway is one process as before.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

SLOT_ENV = "LINGYUN_WORKER_SLOT"
COUNT_ENV = "LINGYUN_WORKER_COUNT"
FD_ENV = "LINGYUN_WORKER_FD"
LIMITS_ENV = "LINGYUN_WORKER_LIMITS"
SETTINGS_ENV = "LINGYUN_WORKER_SETTINGS"
SETUP_ENV = "LINGYUN_WORKER_SETUP"
# The response header naming the worker that answered (only with several workers).
WORKER_HEADER = b"x-lingyun-worker"


def slot() -> int | None:
    value = os.environ.get(SLOT_ENV)
    return None if value is None else int(value)


def shared_limits_path() -> Path | None:
    value = os.environ.get(LIMITS_ENV)
    return Path(value) if value else None


def setup_token() -> str | None:
    return os.environ.get(SETUP_ENV) or None


def owner_name(base: str, worker_slot: int) -> str:
    """A worker's instance owner: the gateway's name and its slot, the same after a restart."""
    return f"{base}/w{worker_slot}"


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class WorkerHeaderMiddleware:
    """Names the worker on every HTTP response, so tests and operators see where it landed."""

    def __init__(self, app: App, worker_slot: int) -> None:
        self.app = app
        self.value = str(worker_slot).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (WORKER_HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, tagged)
