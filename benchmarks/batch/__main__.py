"""``python -m benchmarks.batch [--quick]``: the batch lane against interactive traffic.

One ``lingyun serve`` (metering on) with a simulator deployment of ``--slots`` request slots.
Side by side in one run:

1. interactive latency (closed-loop clients, p50/p99) with the deployment idle, then with a
   large batch running in the batch lane (goal: p50 and p99 within 1.5x of idle);
2. the time for ``--lines`` chat lines as a batch (runner concurrency ``--slots``) with
   nothing else running, against the same lines sent synchronously by ``--slots`` clients
   (goal: batch throughput at least 0.9x of synchronous).

Results go to ``benchmarks/results/batch[-quick].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.support.databases import fresh_sqlite
from tests.support.load import percentile
from tests.support.provision import new_key
from tests.support.server import LingyunServer

RESULTS = Path(__file__).resolve().parents[1] / "results"
MSG = [{"role": "user", "content": "benchmark me"}]


def _line(i: int, max_tokens: int) -> dict[str, Any]:
    return {
        "custom_id": f"b{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "sim", "messages": MSG, "max_tokens": max_tokens},
    }


def _submit(client: openai.OpenAI, lines: int, max_tokens: int) -> str:
    data = "".join(json.dumps(_line(i, max_tokens)) + "\n" for i in range(lines)).encode()
    fid = client.files.create(file=("bench.jsonl", io.BytesIO(data)), purpose="batch").id
    return client.batches.create(
        input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h"
    ).id


def _wait(client: openai.OpenAI, batch_id: str, states: set[str]) -> float:
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in states:
            return time.perf_counter()
        if batch.status in {"failed", "expired", "cancelled"} - states:
            raise SystemExit(f"batch {batch_id} ended {batch.status}: {batch.errors}")
        time.sleep(0.02)


async def _interactive(
    base: str, key: str, clients: int, window_s: float, max_tokens: int
) -> list[float]:
    latencies: list[float] = []
    stop = time.perf_counter() + window_s
    body = {"model": "sim", "messages": MSG, "max_tokens": max_tokens}

    async def one(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            resp = await http.post("/v1/chat/completions", json=body)
            resp.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, trust_env=False) as h:
        await asyncio.gather(*(one(h) for _ in range(clients)))
    return latencies


async def _sync_lines(base: str, key: str, lines: int, clients: int, max_tokens: int) -> float:
    todo = list(range(lines))
    body = {"model": "sim", "messages": MSG, "max_tokens": max_tokens}

    async def one(http: httpx.AsyncClient) -> None:
        while todo:
            todo.pop()
            resp = await http.post("/v1/chat/completions", json=body)
            resp.raise_for_status()

    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, trust_env=False) as h:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(h) for _ in range(clients)))
        return time.perf_counter() - t0


def _lat(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    server = LingyunServer(
        data_dir=root,
        database_url=fresh_sqlite(root),
        models=[
            {
                "name": "sim",
                "engine": "simulator",
                "max_inflight": args.slots,
                "args": {"itl_ms": args.itl_ms},
            }
        ],
        extra_config={"batch_concurrency": args.slots, "batch_max_lines": 50_000},
    )
    server.start()
    try:
        key = new_key(server, "bench")[0]
        client = server.client(key, max_retries=0)
        base = server.base_url
        # warm up the path
        asyncio.run(_interactive(base, key, args.clients, 1.0, args.max_tokens))
        idle = asyncio.run(_interactive(base, key, args.clients, args.window, args.max_tokens))
        big = _submit(client, args.big_lines, args.max_tokens)
        _wait(client, big, {"in_progress"})
        while (client.batches.retrieve(big).request_counts or _Zero()).completed < args.slots:
            time.sleep(0.05)  # the batch lane is full before we measure
        busy = asyncio.run(_interactive(base, key, args.clients, args.window, args.max_tokens))
        running = client.batches.retrieve(big)
        client.batches.cancel(big)
        _wait(client, big, {"cancelled"})

        small = _submit(client, args.lines, args.max_tokens)
        t0 = _wait(client, small, {"in_progress", "completed"})
        t1 = _wait(client, small, {"completed"})
        batch_s = t1 - t0
        sync_s = asyncio.run(_sync_lines(base, key, args.lines, args.slots, args.max_tokens))
    finally:
        server.stop()
    idle_l, busy_l = _lat(idle), _lat(busy)
    return {
        "config": vars(args),
        "machine": platform.platform(),
        "interactive_idle": idle_l,
        "interactive_with_batch": busy_l,
        "batch_lines_done_while_measuring": (running.request_counts or _Zero()).completed,
        "p50_ratio": round(busy_l["p50_ms"] / idle_l["p50_ms"], 3),
        "p99_ratio": round(busy_l["p99_ms"] / idle_l["p99_ms"], 3),
        "batch_s": round(batch_s, 2),
        "sync_s": round(sync_s, 2),
        "batch_lines_per_s": round(args.lines / batch_s, 1),
        "sync_lines_per_s": round(args.lines / sync_s, 1),
        "throughput_ratio": round(sync_s / batch_s, 3),
    }


class _Zero:
    completed = 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="A run of about a minute.")
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--clients", type=int, default=2, help="Interactive closed-loop clients.")
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--lines", type=int, default=2000)
    p.add_argument("--big-lines", type=int, default=20000)
    args = p.parse_args()
    if args.quick:
        args.window, args.lines, args.big_lines = 10.0, 400, 5000
    with tempfile.TemporaryDirectory(prefix="lingyun-bench-batch-") as tmp:
        result = run(args, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("batch-quick.json" if args.quick else "batch.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = result["p50_ratio"] <= 1.5 and result["p99_ratio"] <= 1.5
    ok = ok and result["throughput_ratio"] >= 0.9
    print(f"goals {'met' if ok else 'NOT met'} -> {out}")


if __name__ == "__main__":
    main()
