"""``python -m benchmarks.gateway [--quick] [--observability]``: the side-by-side benchmark.

For each simulator pace, streaming mode and concurrency level, the load generator sends the
same fixed number of requests (a) straight to the replica, (b) through Lingyun, (b') through
Lingyun with /metrics and the request log off (``lingyun-noobs``) and (c) through LiteLLM,
one after the other, so every ratio compares figures from the same run. ``--observability``
runs only (b) and (b') and prints their requests/s ratio.
Results go to ``benchmarks/results/<tag>.json``, ``RESULTS.md`` and ``<tag>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.gateway import report
from benchmarks.gateway.procs import (
    CPU_COUNT,
    PeakRss,
    Proc,
    cpu_seconds,
    pinned,
    stop_on_sigterm,
)
from benchmarks.gateway.targets import (
    PACES,
    Pace,
    Target,
    litellm_version,
    start_lingyun,
    start_litellm,
    start_replica,
)

RESULTS = Path(__file__).resolve().parents[1] / "results"
LEVELS = (1, 16, 64, 256, 1024)
# Requests per run, by concurrency: (0 ms pace, 50 ms pace). The paced simulator takes
# 50 ms + 15 x 20 ms = 350 ms per request, so low concurrency gets fewer requests.
FULL_COUNTS = {1: (300, 30), 16: (2000, 320), 64: (3000, 1280), 256: (3000, 2048),
               1024: (3072, 3072)}  # fmt: skip
QUICK_COUNTS = {1: (100, 10), 16: (600, 160), 64: (1000, 320), 256: (1024, 512),
                1024: (1024, 1024)}  # fmt: skip
# LiteLLM serves about 50 requests/s per worker here: fewer requests keep the run bounded.
LITELLM_COUNTS = {1: (50, 15), 16: (300, 160), 64: (400, 320), 256: (512, 512),
                  1024: (1024, 1024)}  # fmt: skip


def layout(pin: bool) -> dict[str, str | None]:
    """CPU sets: the gateway under test gets a core of its own; see RESULTS.md."""
    if not pin:
        return {"replica": None, "gateway": None, "loadgen": None}
    if CPU_COUNT >= 3:
        return {"replica": "0", "loadgen": "1", "gateway": ",".join(map(str, range(2, CPU_COUNT)))}
    if CPU_COUNT == 2:
        return {"replica": "0", "loadgen": "0", "gateway": "1"}
    return {"replica": None, "gateway": None, "loadgen": None}


def count_for(target: str, conc: int, pace: Pace, quick: bool) -> int:
    table = QUICK_COUNTS if quick else FULL_COUNTS
    i = 0 if pace.ttft_ms == 0 else 1
    n = table[conc][i]
    if target == "litellm":
        n = min(n, LITELLM_COUNTS[conc][i])
    return n


def measure(
    target: Target,
    pace: Pace,
    replica: Proc,
    stream: bool,
    conc: int,
    count: int,
    cpus: str | None,
    deadline_s: float,
) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "benchmarks.gateway.loadgen", "--url", target.base_url,
        "--key", target.key, "--model", target.model(pace), "--concurrency", str(conc),
        "--count", str(count), "--deadline-s", str(deadline_s), "--wait-go",
    ]  # fmt: skip
    if stream:
        cmd.append("--stream")
    gen = subprocess.Popen(
        pinned(cmd, cpus), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert gen.stdin is not None and gen.stdout is not None
    if gen.stdout.readline().strip() != "warm":
        gen.wait()
        raise RuntimeError(f"load generator failed for {target.name}")
    watched = target.proc.pid if target.proc else replica.pid
    exclude = {replica.pid} if target.proc else set()
    with PeakRss(watched, exclude) as rss:
        cpu0, rcpu0 = cpu_seconds(watched, exclude), cpu_seconds(replica.pid, set())
        gen.stdin.write("go\n")
        gen.stdin.flush()
        line = gen.stdout.readline().strip()
        cpu1, rcpu1 = cpu_seconds(watched, exclude), cpu_seconds(replica.pid, set())
    result: dict[str, Any] = json.loads(gen.stdout.readline()) if line == "done" else {}
    gen.wait()
    if not result:
        raise RuntimeError(f"load generator gave no result for {target.name}")
    result.update(
        target=target.name,
        pace=pace.name,
        gateway_cpu_s=None if target.proc is None else round(cpu1 - cpu0, 4),
        replica_cpu_s=round(rcpu1 - rcpu0, 4),
        peak_rss_mb=round(rss.peak / 2**20, 1) if target.proc else None,
    )
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer levels and requests (minutes)")
    p.add_argument("--targets", default="direct,lingyun,lingyun-noobs,litellm")
    p.add_argument(
        "--observability",
        action="store_true",
        help="only Lingyun with metrics and the request log on vs off (targets and tag)",
    )
    p.add_argument("--levels", default=None, help="comma-separated concurrency levels")
    p.add_argument("--paces", default=",".join(p.name for p in PACES))
    p.add_argument("--modes", default="unary,stream")
    p.add_argument(
        "--rounds", type=int, default=1, help="repeat each level, alternating target order"
    )
    p.add_argument("--tag", default=None, help="result file name [gateway or gateway-quick]")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--deadline-s", type=float, default=120.0, help="cap on one run's time")
    p.add_argument("--no-report", action="store_true", help="JSON only (no RESULTS.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    stop_on_sigterm()
    args = parse(argv)
    quick = args.quick
    levels = (
        [int(x) for x in args.levels.split(",")]
        if args.levels
        else ([1, 64, 256] if quick else list(LEVELS))
    )
    names = ["lingyun", "lingyun-noobs"] if args.observability else args.targets.split(",")
    paces = [p for p in PACES if p.name in args.paces.split(",")]
    modes = [m == "stream" for m in args.modes.split(",")]
    cpus = layout(not args.no_pin)
    base = "observability" if args.observability else "gateway"
    tag = args.tag or (f"{base}-quick" if quick else base)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    runs: list[dict[str, Any]] = []
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="lingyun-bench-") as tmp:
        work = Path(tmp)
        try:
            replicas: dict[str, Proc] = {}
            urls: dict[str, str] = {}
            for pace in paces:
                replicas[pace.name], urls[pace.name] = start_replica(pace, work, cpus["replica"])
                procs.append(replicas[pace.name])
            targets: list[Target] = []
            for name in names:
                if name == "direct":
                    # One direct target per pace; base_url is filled per pace below.
                    targets.append(Target("direct", "", "none", None))
                elif name in ("lingyun", "lingyun-nometer", "lingyun-noobs", "lingyun-w2"):
                    targets.append(start_lingyun(urls, work, cpus["gateway"], name))
                elif name == "litellm":
                    targets.append(start_litellm(urls, work, cpus["gateway"]))
                else:
                    raise SystemExit(f"unknown target {name!r}")
                if targets[-1].proc is not None:
                    procs.append(targets[-1].proc)  # type: ignore[arg-type]
            for pace in paces:
                for stream in modes:
                    for conc in levels:
                        for i in range(args.rounds):  # odd rounds run the targets backwards
                            for t in targets if i % 2 == 0 else targets[::-1]:
                                tgt = t if t.proc else Target(t.name, urls[pace.name], t.key, None)
                                n = count_for(t.name, conc, pace, quick)
                                r = measure(tgt, pace, replicas[pace.name], stream, conc, n,
                                            cpus["loadgen"], args.deadline_s)  # fmt: skip
                                runs.append(r)
                                print(report.one_line(r), flush=True)
        finally:
            for proc in reversed(procs):
                proc.stop()
    meta = {
        "tag": tag,
        "quick": quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "cpu_count": CPU_COUNT,
        "cpu_layout": cpus,
        # Other work on the machine skews every figure; the load average says how much.
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "machine": platform.platform(),
        "litellm": litellm_version() if "litellm" in names else None,
        "paces": [asdict(p) for p in paces],
        "notes": [
            "LiteLLM runs offline without a database: master key only (no virtual keys, "
            "spend logs or budgets); its Prisma engine cannot be downloaded here.",
            "Lingyun runs with key auth (hashed key, cached lookup) and usage metering "
            "(group-committed SQLite rows) on; admission is whatever the tree wires in.",
        ],
    }
    doc = {"meta": meta, "rows": report.rows(runs), "runs": runs}
    for line in report.observability_ratios(doc["rows"]):
        print(line, flush=True)
    out = RESULTS / f"{tag}.json"
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")
    if not args.no_report:
        report.write(doc, RESULTS)


if __name__ == "__main__":
    main()
