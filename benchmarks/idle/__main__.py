"""What an idle gateway costs: CPU and database writes with five deployments and no traffic.

``lingyun serve`` as shipped (SQLite in its data dir, metering on) with five simulator
deployments, each with its replica; once all are healthy it is left alone for ``--seconds``.
Measured from /proc: the gateway process's own CPU (its replicas apart, and beside them for
reference), and whether the database changed at all (the SQLite file and its WAL: size and
modification time, sampled every second). A gateway process with a metering-off twin is
measured in the same run, as the baseline. Run: ``make bench-idle`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from benchmarks.gateway.procs import Proc, cpu_seconds, free_port, stop_on_sigterm

RESULTS = Path(__file__).resolve().parents[1] / "results"
DEPLOYMENTS = 5


def _start(workdir: Path, name: str, metering: bool) -> tuple[Proc, Path]:
    data = workdir / name
    data.mkdir(parents=True)
    models = [{"name": f"sim{i}", "engine": "simulator"} for i in range(DEPLOYMENTS)]
    config = data / "lingyun.yaml"
    config.write_text(yaml.safe_dump({"models": models, "metering": metering}))
    port = free_port()
    cmd = [sys.executable, "-m", "lingyun.cli.main", "serve", "--port", str(port),
           "--data-dir", str(data), "--config", str(config)]  # fmt: skip
    proc = Proc(name, cmd, workdir / f"{name}.log", None)
    health = os.environ.get("LINGYUN_HEALTH_TOKEN", "")
    deadline = time.monotonic() + 120
    while True:  # every deployment healthy: the state the idle spell starts from
        proc.wait_http(f"http://127.0.0.1:{port}/health", 60)
        body = httpx.get(
            f"http://127.0.0.1:{port}/health",
            params={"details": "1"},
            headers={"Authorization": f"Bearer {health}"},
            timeout=5,
        ).json()
        healthy = [d for d in body.get("deployments", []) if d.get("healthy_replicas", 0) > 0]
        if len(healthy) == DEPLOYMENTS:
            return proc, data
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: deployments not healthy: {body}")
        time.sleep(0.5)


def _db_state(data: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in data.glob("lingyun.db*")}


def _replicas(pid: int) -> set[int]:
    return {
        c.pid
        for c in psutil.Process(pid).children(recursive=True)
        if "lingyun.cli.worker" in " ".join(c.cmdline())
    }


def measure(seconds: float) -> list[dict[str, Any]]:
    stop_on_sigterm()
    os.environ.setdefault("LINGYUN_HEALTH_TOKEN", "idle-bench")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lingyun-idle-") as tmp:
        variants = (("metering-on", True), ("metering-off", False))
        started = [_start(Path(tmp), name, on) for name, on in variants]
        try:
            time.sleep(2.0)  # past start-up's own writes (migrations, first heartbeat)
            marks = []
            for proc, data in started:
                workers = _replicas(proc.pid)
                marks.append((workers, cpu_seconds(proc.pid, workers), _db_state(data)))
            t0 = time.monotonic()
            changes = [0 for _ in started]
            while time.monotonic() - t0 < seconds:
                time.sleep(1.0)
                for i, (_, data) in enumerate(started):
                    now = _db_state(data)
                    if now != marks[i][2]:
                        changes[i] += 1
                        marks[i] = (marks[i][0], marks[i][1], now)
            elapsed = time.monotonic() - t0
            for i, (proc, _) in enumerate(started):
                workers, cpu0, _ = marks[i]
                gateway = cpu_seconds(proc.pid, workers) - cpu0
                rows.append({
                    "target": proc.name,
                    "seconds": round(elapsed, 1),
                    "gateway_cpu_percent": round(100 * gateway / elapsed, 2),
                    "db_changes": changes[i],
                })  # fmt: skip
        finally:
            for proc, _ in started:
                proc.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    rows = measure(args.seconds)
    lines = [
        "| gateway | seconds idle | gateway CPU (% of a core) | seconds the DB changed in |",
        "|---|---|---|---|",
        *(f"| {r['target']} | {r['seconds']} | {r['gateway_cpu_percent']:.2f} | "
          f"{r['db_changes']} |" for r in rows),
    ]  # fmt: skip
    note = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[0]:.2f}); {DEPLOYMENTS} simulator deployments, no traffic."
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "idle.json").write_text(json.dumps(rows, indent=1) + "\n")
    report = "# An idle gateway\n\n" + note + "\n\n" + "\n".join(lines) + "\n"
    (RESULTS / "IDLE.md").write_text(report)
    print(note)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
