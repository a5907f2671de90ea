"""What metering costs: requests/s through Lingyun with metering on and off, side by side.

Both gateways run at once against the same simulator replica (0 ms pace, so the gateway is
the bottleneck and metering's cost shows in full); the gateway harness alternates them level
by level. Durable, group-committed reservations and settlements are on in ``lingyun`` and
off in ``lingyun-nometer``. Run: ``python -m benchmarks.metering`` (a few minutes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.gateway.__main__ import main as gateway_main

RESULTS = Path(__file__).resolve().parents[1] / "results"


def table(rows: list[dict[str, Any]]) -> list[str]:
    on = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "lingyun"}
    off = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "lingyun-nometer"}
    out = [
        "| mode | concurrency | req/s on | req/s off | on ÷ off | CPU ms/req on | off | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(on):
        a, b = on[key], off.get(key)
        if b is None:
            continue
        out.append(
            f"| {'stream' if key[0] else 'unary'} | {key[1]} | {a['rps']:.0f} | {b['rps']:.0f} "
            f"| {a['rps'] / b['rps']:.2f}× | {a['gateway_cpu_s_per_1000']:.2f} "
            f"| {b['gateway_cpu_s_per_1000']:.2f} | {a['errors'] + b['errors']} |"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    levels = "1,16,64" if "--quick" in argv else "1,16,64,256"
    gateway_main(
        ["--targets", "lingyun,lingyun-nometer", "--levels", levels, "--paces", "sim-0ms",
         "--modes", "unary,stream", "--tag", "metering", "--no-report"]
    )  # fmt: skip
    data = json.loads((RESULTS / "metering.json").read_text())
    lines = table(data["rows"])
    note = (
        f"Measured {data['meta']['started']} on {data['meta']['cpu_count']} cores "
        f"(load average {data['meta']['loadavg_start']} at start). Whole-process CPU of the "
        "gateway per request; ratios from the same run."
    )
    (RESULTS / "METERING.md").write_text(
        "# Metering on vs off\n\n" + note + "\n\n" + "\n".join(lines) + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
