"""``python -m benchmarks.fairness``: tenant fairness under VTC and FCFS, side by side.

One simulator worker (``itl_ms`` per token) serves a deployment of ``--slots`` request slots
behind a real ``lingyun serve``. Tenant A runs ten times tenant B's closed-loop clients,
enough to keep the deployment saturated on its own; B stays within its fair share. The same
load runs under ``scheduler: vtc`` and ``scheduler: fcfs``, and B once alone, for B's
baseline latency. Per tenant: tokens/s, requests/s, p50/p99 latency; B's latency against B
alone (goal under VTC: within 1.5x). Results go to ``benchmarks/results/fairness.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.databases import fresh_sqlite
from tests.support.load import LoadResult, TenantLoad, Window, closed_loop, percentile
from tests.support.provision import new_key
from tests.support.server import LingyunServer
from tests.support.sim_worker import SimWorker, sim_worker

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _run(
    args: argparse.Namespace, root: Path, worker: SimWorker, scheduler: str, tenants: str
) -> LoadResult:
    data = root / f"{scheduler}-{tenants}"
    server = LingyunServer(
        data_dir=data,
        database_url=fresh_sqlite(data),
        models=[worker.deployment(max_inflight=args.slots)],
        extra_config={"scheduler": scheduler, "metering": False},
    )
    server.start()
    try:
        loads = []
        if "a" in tenants:
            loads.append(TenantLoad("a", new_key(server, "tenant-a")[0], args.b_clients * 10))
        loads.append(TenantLoad("b", new_key(server, "tenant-b")[0], args.b_clients))

        async def active() -> int:
            async with httpx.AsyncClient(trust_env=False) as http:
                resp = await http.get(f"http://127.0.0.1:{worker.port}/health", timeout=5)
                return int(resp.json()["active"])

        return asyncio.run(
            closed_loop(
                server.base_url,
                "sim",
                loads,
                window=Window(warmup=args.warmup, span=args.window),
                max_tokens=args.max_tokens,
                max_tokens_spread=args.spread,
                busy_probe=active,
            )
        )
    finally:
        server.stop()


def _summary(result: LoadResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "engine_busy_mean": round(statistics.mean(result.busy), 2) if result.busy else None,
        "tenants": {},
    }
    for name, t in result.tenants.items():
        lat_ms = [x * 1000 for x in t.latencies_s]
        out["tenants"][name] = {
            "tokens_per_s": round(t.tokens / result.window_s, 1),
            "requests_per_s": round(t.requests / result.window_s, 2),
            "p50_ms": round(percentile(lat_ms, 50), 1),
            "p99_ms": round(percentile(lat_ms, 99), 1),
            "errors": t.errors,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fairness")
    parser.add_argument("--slots", type=int, default=4, help="max_inflight of the deployment")
    parser.add_argument("--itl-ms", type=float, default=10.0, help="simulator ms per token")
    parser.add_argument("--max-tokens", type=int, default=20, help="output tokens per request")
    parser.add_argument("--spread", type=float, default=0.5, help="length spread, ±fraction")
    parser.add_argument("--b-clients", type=int, default=1, help="B's clients (A has 10x)")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--out", type=Path, default=RESULTS / "fairness.json")
    args = parser.parse_args()

    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lingyun-fairness-") as tmp:
        root = Path(tmp)
        with sim_worker(root / "worker", itl_ms=args.itl_ms) as worker:
            for label, scheduler, tenants in (
                ("vtc", "vtc", "ab"),
                ("fcfs", "fcfs", "ab"),
                ("b_alone", "vtc", "b"),
            ):
                print(f"running {label} ...", flush=True)
                runs[label] = _summary(_run(args, root, worker, scheduler, tenants))

    alone = runs["b_alone"]["tenants"]["b"]
    ratios = {
        sched: {
            q: round(runs[sched]["tenants"]["b"][q] / alone[q], 2) for q in ("p50_ms", "p99_ms")
        }
        for sched in ("vtc", "fcfs")
    }
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "setup": {
            "slots": args.slots,
            "itl_ms": args.itl_ms,
            "max_tokens": args.max_tokens,
            "max_tokens_spread": args.spread,
            "clients": {"a": args.b_clients * 10, "b": args.b_clients},
            "warmup_s": args.warmup,
            "window_s": args.window,
        },
        "runs": runs,
        "b_latency_vs_alone": ratios,
        "goal_b_within_1_5x_under_vtc": ratios["vtc"]["p50_ms"] <= 1.5
        and ratios["vtc"]["p99_ms"] <= 1.5,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    print(f"\nwrote {args.out}")


def _print(report: dict[str, Any]) -> None:
    rows = [("run", "tenant", "tokens/s", "req/s", "p50 ms", "p99 ms", "errors", "engine busy")]
    for label, run in report["runs"].items():
        for name, t in run["tenants"].items():
            rows.append(
                (
                    label,
                    name,
                    f"{t['tokens_per_s']:.1f}",
                    f"{t['requests_per_s']:.2f}",
                    f"{t['p50_ms']:.1f}",
                    f"{t['p99_ms']:.1f}",
                    str(t["errors"]),
                    f"{run['engine_busy_mean']}/{report['setup']['slots']}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    for sched, ratio in report["b_latency_vs_alone"].items():
        print(f"B latency vs B alone under {sched}: p50 {ratio['p50_ms']}x, p99 {ratio['p99_ms']}x")


if __name__ == "__main__":
    main()
