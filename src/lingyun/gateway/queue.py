"""Stage 4: wait for capacity. A deployment at capacity holds requests here instead of piling
them onto the engine; the fair scheduler (virtual token counters) plugs in behind this
interface."""

from __future__ import annotations

from typing import Protocol

from lingyun.gateway.context import RequestContext


class CapacityQueue(Protocol):
    async def acquire(self, ctx: RequestContext) -> None: ...

    def release(self, ctx: RequestContext) -> None: ...
