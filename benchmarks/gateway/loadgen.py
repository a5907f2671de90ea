"""The load generator: a separate process that sends a fixed number of chat requests.

``concurrency`` workers share one counter, so exactly ``count`` requests are measured. A
warm-up round (one request per worker, not measured) opens the connections first; then the
process prints ``warm``, waits for ``go`` on stdin (the orchestrator samples the gateway's CPU
time between the two), runs the measured round, prints ``done`` and then one JSON line with
per-request latencies, times to first event, and errors.

aiohttp rather than httpx: the load generator shares two cores with the servers it
measures, so it should spend as little CPU per request as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])


def _payload(model: str, stream: bool, max_tokens: int) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say something about clouds."}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


async def _one(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, stream: bool
) -> tuple[float, float | None]:
    """One request; returns (latency, time to first event) in ms or raises on any failure."""
    start = time.perf_counter()
    first: float | None = None
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
        if not stream:
            data = await resp.read()
            if b'"choices"' not in data:
                raise RuntimeError(f"no choices: {data[:200]!r}")
        else:
            done = False
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                if first is None:
                    first = (time.perf_counter() - start) * 1000
                if line.startswith(b"data: [DONE]"):
                    done = True
                elif b'"error"' in line[:20]:
                    raise RuntimeError(f"error event: {line[:200]!r}")
            if not done:
                raise RuntimeError("stream ended without [DONE]")
    return (time.perf_counter() - start) * 1000, first


async def _round(
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    count: int,
    tally: Tally | None,
    deadline: float,
) -> None:
    url = args.url.rstrip("/") + "/chat/completions"
    headers = {"authorization": f"Bearer {args.key}", "content-type": "application/json"}
    body = _payload(args.model, args.stream, args.max_tokens)
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                timeout = max(0.1, deadline - time.monotonic())
                latency, first = await asyncio.wait_for(
                    _one(session, url, headers, body, args.stream), timeout
                )
            except TimeoutError:
                if tally is not None:
                    tally.error("timeout (run deadline)")
                continue
            except Exception as exc:  # every failure is a counted error, not a crash
                if tally is not None:
                    tally.error(f"{type(exc).__name__}: {exc}")
                continue
            if tally is not None:
                tally.latencies_ms.append(latency)
                if first is not None:
                    tally.ttft_ms.append(first)

    await asyncio.gather(*(worker() for _ in range(min(args.concurrency, count))))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm_deadline = time.monotonic() + args.deadline_s
        await _round(session, args, max(args.concurrency, 8), None, warm_deadline)
        print("warm", flush=True)
        if args.wait_go:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        tally = Tally()
        t0 = time.perf_counter()
        await _round(session, args, args.count, tally, time.monotonic() + args.deadline_s)
        wall = time.perf_counter() - t0
        print("done", flush=True)
    return {
        "count": args.count,
        "concurrency": args.concurrency,
        "stream": args.stream,
        "wall_s": wall,
        "ok": len(tally.latencies_ms),
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "latencies_ms": [round(x, 3) for x in tally.latencies_ms],
        "ttft_ms": [round(x, 3) for x in tally.ttft_ms],
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True, help="base URL ending in /v1")
    p.add_argument("--key", default="none")
    p.add_argument("--model", required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--deadline-s", type=float, default=120.0)
    p.add_argument("--wait-go", action="store_true", help="wait for a line on stdin after warm")
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        import uvloop

        result = uvloop.run(main(parse()))
    except ImportError:
        result = asyncio.run(main(parse()))
    print(json.dumps(result), flush=True)
