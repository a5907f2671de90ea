"""Closed-loop streaming load from several tenants, counting the tokens each one receives.

Shared by the fairness test and ``benchmarks/fairness``. Each tenant runs ``clients`` loops
that send a streaming chat request, read it to the end and send the next. Tokens are counted
inside a measurement ``Window`` that opens after a warm-up, so the counts are the service each
tenant got while all of them were competing. A window is measured in seconds (benchmarks,
which report rates) or in tokens delivered to all tenants together (tests, which compare
shares: a slow or busy machine stretches the window instead of shrinking the sample).
``max_tokens_spread`` varies request lengths (uniformly, ±spread), as real traffic does;
equal lengths keep a saturated engine's slots in lockstep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx


@dataclass(frozen=True)
class TenantLoad:
    name: str
    key: str
    clients: int


@dataclass
class TenantResult:
    tokens: int = 0  # received inside the window
    requests: int = 0  # completed inside the window
    errors: int = 0
    latencies_s: list[float] = field(default_factory=list)  # requests started and ended inside


@dataclass
class LoadResult:
    window_s: float  # how long the window was open, whatever its unit
    tenants: dict[str, TenantResult]
    busy: list[int]  # engine's requests in flight, sampled through the window


@dataclass
class Window:
    """Opens after ``warmup`` and closes ``span`` later, both in ``unit``."""

    warmup: float
    span: float
    unit: Literal["s", "tokens"] = "s"
    _start: float = field(default_factory=time.perf_counter)
    _tokens: int = 0
    opened_at: float | None = None
    closed_at: float | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._start, self._tokens = time.perf_counter(), 0

    def _progress(self) -> float:
        return time.perf_counter() - self._start if self.unit == "s" else float(self._tokens)

    def _advance(self) -> None:
        progress = self._progress()
        if progress >= self.warmup and not self.opened.is_set():
            self.opened_at = time.perf_counter()
            self.opened.set()
        if progress >= self.warmup + self.span and not self.closed.is_set():
            self.closed_at = time.perf_counter()
            self.closed.set()

    def inside(self) -> bool:
        self._advance()
        return self.opened.is_set() and not self.closed.is_set()

    def token(self) -> bool:
        """Count one delivered token; true if it falls inside the window."""
        self._tokens += 1
        return self.inside()

    async def run_clock(self) -> None:
        """A window in seconds closes by itself; one in tokens closes as they arrive."""
        if self.unit != "s":
            return
        for edge in (self.warmup, self.warmup + self.span):
            await asyncio.sleep(max(0.0, edge - self._progress()))
            self._advance()

    def length_s(self) -> float:
        assert self.opened_at is not None and self.closed_at is not None
        return self.closed_at - self.opened_at


async def closed_loop(
    base_url: str,
    model: str,
    loads: list[TenantLoad],
    *,
    window: Window,
    max_tokens: int,
    max_tokens_spread: float = 0.0,
    busy_probe: Callable[[], Awaitable[int]] | None = None,
    probe_every_s: float = 0.05,
    give_up_s: float = 600.0,
) -> LoadResult:
    """``give_up_s`` only stops a token window that never fills (every request failing)."""
    results = {load.name: TenantResult() for load in loads}
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "tell me about fair queues"}],
        "stream": True,
    }

    lengths = random.Random(7)
    low = max(1, round(max_tokens * (1 - max_tokens_spread)))
    high = max(low, round(max_tokens * (1 + max_tokens_spread)))

    async def client(http: httpx.AsyncClient, load: TenantLoad) -> None:
        res = results[load.name]
        headers = {"authorization": f"Bearer {load.key}"}
        while not window.closed.is_set():
            started_inside = window.inside()
            sent = time.perf_counter()
            request = {**body, "max_tokens": lengths.randint(low, high)}
            try:
                async with http.stream(
                    "POST", "/v1/chat/completions", json=request, headers=headers
                ) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        res.errors += 1
                        await asyncio.sleep(0.05)  # back off, as a client would
                        continue
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:") or line.endswith("[DONE]"):
                            continue
                        if json.loads(line[5:]).get("choices") and window.token():
                            res.tokens += 1
            except httpx.HTTPError:
                res.errors += 1
                continue
            if window.inside():
                res.requests += 1
                if started_inside:
                    res.latencies_s.append(time.perf_counter() - sent)

    async def probe(busy: list[int]) -> None:
        assert busy_probe is not None
        await window.opened.wait()
        while not window.closed.is_set():
            busy.append(await busy_probe())
            await asyncio.sleep(probe_every_s)

    busy: list[int] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=120, limits=limits, trust_env=False
    ) as http:
        tasks = [
            asyncio.create_task(client(http, load)) for load in loads for _ in range(load.clients)
        ]
        if busy_probe is not None:
            tasks.append(asyncio.create_task(probe(busy)))
        window.start()
        clock = asyncio.create_task(window.run_clock())
        try:
            await asyncio.wait_for(window.closed.wait(), give_up_s)
        except TimeoutError:
            raise AssertionError(f"window never filled: {window}, {results}") from None
        for task in [*tasks, clock]:  # requests still streaming are cut off, as a client would
            task.cancel()
        for task in [*tasks, clock]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return LoadResult(window.length_s(), results, busy)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
