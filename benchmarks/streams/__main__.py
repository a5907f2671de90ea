"""``python -m benchmarks.streams [--count N] [--workers 1,auto]``: many concurrent streams.

One simulator replica (100 ms to the first token, then 30 tokens 100 ms apart) behind
Lingyun, started once per ``--workers`` value; ``count`` streams are opened at once by one
aiohttp client (no connector limit; ``ulimit -n`` raised to its hard limit) and each is read
to its end. Reported per worker setting, from the same run: errors (a status other than 200,
or a stream that ends without ``[DONE]``), the wall time until the last stream ended, and
the streams' durations (p50, p99, max). Results go to ``benchmarks/results/streams.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.gateway.procs import Proc, stop_on_sigterm
from benchmarks.gateway.targets import Pace, start_lingyun, start_replica

RESULTS = Path(__file__).resolve().parents[1] / "results"
PACE = Pace("sim-100ms", 100, 100)
TOKENS = 30


def raise_nofile() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def fire(base_url: str, key: str, model: str, count: int, timeout_s: float) -> dict[str, Any]:
    body = json.dumps({"model": model, "stream": True, "max_tokens": TOKENS,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()  # fmt: skip
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    durations: list[float] = []
    errors: dict[str, int] = {}
    go = asyncio.Event()

    def error(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    async def one(session: aiohttp.ClientSession) -> None:
        await go.wait()
        start = time.perf_counter()
        try:
            async with session.post(f"{base_url}/chat/completions", data=body,
                                    headers=headers) as resp:  # fmt: skip
                if resp.status != 200:
                    error(f"status {resp.status}")
                    await resp.read()
                    return
                done = False
                async for line in resp.content:
                    if line.startswith(b"data: [DONE]"):
                        done = True
                if not done:
                    error("stream cut")
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            error(type(exc).__name__)
            return
        durations.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(one(session)) for _ in range(count)]
        await asyncio.sleep(0)
        started = time.perf_counter()
        go.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - started
    durations.sort()

    def pct(p: float) -> float | None:
        return (
            round(durations[min(len(durations) - 1, int(p * len(durations)))], 3)
            if durations
            else None
        )

    return {"count": count, "ok": len(durations), "errors": sum(errors.values()),
            "error_kinds": errors, "wall_s": round(wall, 2), "p50_s": pct(0.5),
            "p99_s": pct(0.99), "max_s": pct(1.0)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    stop_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--workers", default="1,auto", help="comma-separated --workers values")
    p.add_argument("--timeout-s", type=float, default=300.0, help="cap on one stream's time")
    p.add_argument("--tag", default="streams")
    args = p.parse_args(argv)
    nofile = raise_nofile()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lingyun-streams-") as tmp:
        work = Path(tmp)
        procs: list[Proc] = []
        try:
            replica, url = start_replica(PACE, work, None)
            procs.append(replica)
            for workers in args.workers.split(","):
                target = start_lingyun({PACE.name: url}, work, None,
                                       name=f"lingyun-w{workers}", workers=workers)  # fmt: skip
                assert target.proc is not None
                try:
                    r = asyncio.run(fire(target.base_url, target.key, PACE.name, args.count,
                                         args.timeout_s))  # fmt: skip
                finally:
                    target.proc.stop()
                r["workers"] = workers
                print(json.dumps(r), flush=True)
                results.append(r)
        finally:
            for proc in reversed(procs):
                proc.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.tag}.json"
    meta = {"pace": {"ttft_ms": PACE.ttft_ms, "itl_ms": PACE.itl_ms, "tokens": TOKENS},
            "nofile": nofile, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpus": os.cpu_count()}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "runs": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
