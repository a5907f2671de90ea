"""Closed-loop streaming load from several tenants, counting the tokens each one receives.

Shared by the fairness test and ``benchmarks/fairness``. Each tenant runs ``clients`` loops
that send a streaming chat request, read it to the end and send the next. Tokens are counted
as they arrive, within a measurement window that starts after a warm-up, so the counts are
the service each tenant got while all of them were competing. ``max_tokens_spread`` varies
request lengths (uniformly, ±spread), as real traffic does; equal lengths keep a saturated
engine's slots in lockstep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

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
    window_s: float
    tenants: dict[str, TenantResult]
    busy: list[int]  # engine's requests in flight, sampled through the window


async def closed_loop(
    base_url: str,
    model: str,
    loads: list[TenantLoad],
    *,
    warmup_s: float,
    window_s: float,
    max_tokens: int,
    max_tokens_spread: float = 0.0,
    busy_probe: Callable[[], Awaitable[int]] | None = None,
    probe_every_s: float = 0.05,
) -> LoadResult:
    results = {load.name: TenantResult() for load in loads}
    start = time.perf_counter()
    begin, end = start + warmup_s, start + warmup_s + window_s
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
        while time.perf_counter() < end:
            sent = time.perf_counter()
            request = {**body, "max_tokens": lengths.randint(low, high)}
            try:
                async with http.stream(
                    "POST", "/v1/chat/completions", json=request, headers=headers
                ) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        res.errors += 1
                        await asyncio.sleep(0.05)
                        continue
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:") or line.endswith("[DONE]"):
                            continue
                        chunk = json.loads(line[5:])
                        now = time.perf_counter()
                        if chunk.get("choices") and begin <= now < end:
                            res.tokens += 1
            except httpx.HTTPError:
                res.errors += 1
                continue
            done = time.perf_counter()
            if begin <= done < end:
                res.requests += 1
                if sent >= begin:
                    res.latencies_s.append(done - sent)

    async def probe(busy: list[int]) -> None:
        assert busy_probe is not None
        await asyncio.sleep(max(0.0, begin - time.perf_counter()))
        while time.perf_counter() < end:
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
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        for task in tasks:  # requests still streaming are cut off, as a client would
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return LoadResult(window_s, results, busy)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
