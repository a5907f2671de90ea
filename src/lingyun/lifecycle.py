"""One lifecycle for the server: parts start in order and stop in reverse, and loops are
supervised.

The server's parts (database, journal, supervisor, relay, ...) each have a start and a stop.
``Lifecycle.start`` runs a part's start and, only once it returned, registers its stop, so a
start that fails stops exactly what had started, newest first, and the failure still
propagates. A stop that fails is logged and the others still run. Background loops are named
tasks: a step that raises is logged and the loop carries on at its next beat, a coroutine
that dies is restarted after a backoff, and all of them are cancelled at shutdown before the
parts they use stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType

logger = logging.getLogger(__name__)

RESTART_BACKOFF_S = (0.5, 30.0)  # first and longest wait before a crashed loop restarts


class Lifecycle:
    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Lifecycle:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)

    async def start(
        self,
        name: str,
        start: Callable[[], Awaitable[object]] | None,
        stop: Callable[[], Awaitable[object]],
    ) -> None:
        """Start a part; its ``stop`` runs at shutdown, before the parts started earlier."""
        if start is not None:
            await start()
        self._stack.push_async_callback(_stop, name, stop)

    def every(self, name: str, interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` every ``interval_s`` until shutdown; a failing step is logged."""
        task = asyncio.create_task(periodic(name, interval_s, step), name=name)
        self._stack.push_async_callback(_cancel, task)


async def periodic(name: str, interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
    """``step`` every ``interval_s``, forever; a step that raises is logged and the next beat
    runs as usual (a refresh that failed once keeps the previous values)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await step()
        except Exception:
            logger.exception("%s failed; retrying in %.1f s", name, interval_s)


def supervised(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """A named task running ``run``; if it raises, the error is logged and ``run`` starts
    again after a backoff (a dead commit or refresh loop would stop billing in silence).
    Parts that own a loop start it with this and cancel the task when they stop."""

    async def keep_running() -> None:
        wait = RESTART_BACKOFF_S[0]
        while True:
            try:
                await run()
                return
            except Exception:
                logger.exception("%s crashed; restarting in %.1f s", name, wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, RESTART_BACKOFF_S[1])

    return asyncio.create_task(keep_running(), name=name)


async def _stop(name: str, stop: Callable[[], Awaitable[object]]) -> None:
    try:
        await stop()
    except Exception:
        logger.exception("stopping %s failed; stopping the rest", name)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
