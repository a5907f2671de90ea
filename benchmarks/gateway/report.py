"""Turn raw runs into ratios, a Markdown table (RESULTS.md) and a PNG plot.

Every absolute figure sits beside its ratio to the direct connection (a) or to LiteLLM (c),
both measured in the same run. "Added" latency is a gateway's percentile minus the direct
percentile at the same pace, mode and concurrency.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def _key(r: Row) -> tuple[str, bool, int]:
    return (r["pace"], r["stream"], r["concurrency"])


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def rows(runs: list[Row]) -> list[Row]:
    """One row per run with its percentiles, costs and ratios to (a) and (c)."""
    out: list[Row] = []
    for r in runs:
        rps = r["ok"] / r["wall_s"] if r["wall_s"] else 0.0
        cpu = r["gateway_cpu_s"]
        out.append(
            {
                "pace": r["pace"],
                "stream": r["stream"],
                "concurrency": r["concurrency"],
                "target": r["target"],
                "count": r["count"],
                "ok": r["ok"],
                "errors": r["errors"],
                "error_samples": r.get("error_samples", []),
                "rps": rps,
                "p50_ms": pct(r["latencies_ms"], 50),
                "p99_ms": pct(r["latencies_ms"], 99),
                "ttft_p50_ms": pct(r["ttft_ms"], 50),
                "ttft_p99_ms": pct(r["ttft_ms"], 99),
                "gateway_cpu_s_per_1000": None if cpu is None else cpu / max(r["count"], 1) * 1000,
                "req_per_cpu_s": None if not cpu else r["count"] / cpu,
                "replica_cpu_s_per_1000": r["replica_cpu_s"] / max(r["count"], 1) * 1000,
                "peak_rss_mb": r["peak_rss_mb"],
            }
        )
    by = {(_key(x), x["target"]): x for x in out}
    for x in out:
        d = by.get((_key(x), "direct"))
        ll = by.get((_key(x), "litellm"))
        if d is not None:
            x["rps_x_direct"] = _ratio(x["rps"], d["rps"])
            x["p50_x_direct"] = _ratio(x["p50_ms"], d["p50_ms"])
            x["p99_x_direct"] = _ratio(x["p99_ms"], d["p99_ms"])
            x["added_p50_ms"] = _diff(x["p50_ms"], d["p50_ms"])
            x["added_p99_ms"] = _diff(x["p99_ms"], d["p99_ms"])
            x["added_ttft_p50_ms"] = _diff(x["ttft_p50_ms"], d["ttft_p50_ms"])
        if ll is not None and x["target"] != "direct":
            x["rps_x_litellm"] = _ratio(x["rps"], ll["rps"])
            x["req_per_cpu_s_x_litellm"] = _ratio(x["req_per_cpu_s"], ll["req_per_cpu_s"])
    return out


def one_line(r: Row) -> str:
    lat = r["latencies_ms"]
    rps = r["ok"] / r["wall_s"] if r["wall_s"] else 0.0
    cpu = r["gateway_cpu_s"]
    cpu_txt = "" if cpu is None else f" gw-cpu {cpu / max(r['count'], 1) * 1000:.2f}s/1k"
    return (
        f"{r['pace']:9} {'stream' if r['stream'] else 'unary':6} c={r['concurrency']:<5}"
        f"{r['target']:8} n={r['count']:<5} err={r['errors']:<4} {rps:8.1f} req/s "
        f"p50 {pct(lat, 50) or 0:8.2f} ms p99 {pct(lat, 99) or 0:8.2f} ms{cpu_txt}"
    )


def _f(v: float | None, fmt: str = ".1f", suffix: str = "") -> str:
    return "–" if v is None else f"{v:{fmt}}{suffix}"


def _x(v: float | None) -> str:
    return "" if v is None else f" ({v:.2f}×)"


def table(rs: list[Row]) -> str:
    head = (
        "| pace | mode | conc | target | req/s (× direct) | p50 ms (× direct) | "
        "p99 ms (× direct) | added p50 / p99 ms | added TTFT p50 ms | gw CPU s / 1k req | "
        "req per gw CPU-s (× LiteLLM) | peak RSS MB | errors |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rs:
        is_gw = r["target"] != "direct"
        lines.append(
            "| "
            + " | ".join(
                [
                    r["pace"],
                    "stream" if r["stream"] else "unary",
                    str(r["concurrency"]),
                    r["target"],
                    _f(r["rps"]) + (_x(r.get("rps_x_direct")) if is_gw else ""),
                    _f(r["p50_ms"], ".2f") + (_x(r.get("p50_x_direct")) if is_gw else ""),
                    _f(r["p99_ms"], ".2f") + (_x(r.get("p99_x_direct")) if is_gw else ""),
                    f"{_f(r.get('added_p50_ms'), '+.2f')} / {_f(r.get('added_p99_ms'), '+.2f')}"
                    if is_gw
                    else "–",
                    _f(r.get("added_ttft_p50_ms"), "+.2f") if is_gw and r["stream"] else "–",
                    _f(r["gateway_cpu_s_per_1000"], ".2f"),
                    _f(r["req_per_cpu_s"], ".0f")
                    + ("" if r["target"] == "litellm" else _x(r.get("req_per_cpu_s_x_litellm"))),
                    _f(r["peak_rss_mb"]),
                    f"{r['errors']}/{r['count']}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def headline(rs: list[Row]) -> list[str]:
    """The issue's targets, as measured (reported, not asserted)."""
    ly = [r for r in rs if r["target"] == "lingyun"]
    out: list[str] = []
    for r in ly:
        if r["concurrency"] == 64 and r["stream"]:
            out.append(
                f"- 64 concurrent streams, {r['pace']}: added p50 "
                f"{_f(r.get('added_p50_ms'), '+.2f')} ms (target ≤ 1 ms), added p99 "
                f"{_f(r.get('added_p99_ms'), '+.2f')} ms (target ≤ 5 ms); "
                f"p50 {_f(r.get('p50_x_direct'), '.3f')}× direct."
            )
    for mode in (False, True):
        xs = sorted(
            x
            for r in ly
            if r["stream"] == mode and (x := r.get("req_per_cpu_s_x_litellm")) is not None
        )
        if xs:
            name = "streaming" if mode else "non-streaming"
            out.append(
                f"- requests per gateway CPU-second, {name}: Lingyun / LiteLLM median "
                f"{xs[len(xs) // 2]:.1f}× (min {xs[0]:.1f}×, max {xs[-1]:.1f}×; target ≥ 10×)."
            )
    out.extend(observability_ratios(rs))
    for r in ly:
        if r["concurrency"] == 1024 and r["stream"]:
            out.append(
                f"- 1,024 concurrent streams, {r['pace']}: {r['errors']} errors in "
                f"{r['count']} requests (target 0); {_f(r.get('rps_x_direct'), '.2f')}× "
                "direct req/s."
            )
    return out


def observability_ratios(rs: list[Row]) -> list[str]:
    """Requests/s with /metrics and the request log on over off at the same pace, mode and
    level: medians over the rounds (``--rounds``), which alternate the two targets' order."""
    by: dict[tuple[tuple[str, bool, int], str], list[Row]] = {}
    for r in rs:
        by.setdefault((_key(r), r["target"]), []).append(r)
    out = []
    for (key, target), on in by.items():
        off = by.get((key, "lingyun-noobs"))
        if target != "lingyun" or not off:
            continue
        a, b = (statistics.median(x["rps"] for x in runs) for runs in (on, off))
        rounds = ", ".join(f"{x['rps'] / y['rps']:.2f}" for x, y in zip(on, off, strict=False))
        cpu_on, cpu_off = (
            statistics.median(x["gateway_cpu_s_per_1000"] or 0 for x in runs) for runs in (on, off)
        )
        pace, stream, conc = key
        out.append(
            f"- metrics + request log on vs off, {pace} {'stream' if stream else 'unary'} "
            f"c={conc}, median of {len(on)}: {a:.0f} vs {b:.0f} req/s = {a / b:.3f}× "
            f"(per round: {rounds}; goal ≥ 0.97×); gateway CPU {cpu_on:.2f} vs "
            f"{cpu_off:.2f} s per 1,000 requests = {_f(_ratio(cpu_off, cpu_on), '.3f')}× "
            "requests per CPU-second."
        )
    return out


def plot(rs: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({(r["pace"], r["stream"]) for r in rs})
    fig, axes = plt.subplots(2, len(cells), figsize=(4.2 * len(cells), 7), squeeze=False)
    for col, (pace, stream) in enumerate(cells):
        for target in ("direct", "lingyun", "lingyun-nometer", "litellm"):
            pts = sorted(
                (r["concurrency"], r["rps"], r["p50_ms"])
                for r in rs
                if r["target"] == target and r["pace"] == pace and r["stream"] == stream
            )
            if not pts:
                continue
            xs = [p[0] for p in pts]
            axes[0][col].plot(xs, [p[1] for p in pts], marker="o", label=target)
            axes[1][col].plot(xs, [p[2] or 0 for p in pts], marker="o", label=target)
        mode = "stream" if stream else "unary"
        axes[0][col].set_title(f"{pace} {mode}: requests/s")
        axes[1][col].set_title(f"{pace} {mode}: p50 latency (ms)")
        for row in (0, 1):
            axes[row][col].set_xscale("log", base=2)
            axes[row][col].set_xlabel("concurrency")
            axes[row][col].grid(alpha=0.3)
        axes[1][col].set_yscale("log")
        axes[0][col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(doc: dict[str, Any], rs: list[Row], png: str) -> str:
    meta = doc["meta"]
    lay = meta["cpu_layout"]
    return "\n".join(
        [
            f"# Gateway benchmark: `{meta['tag']}`",
            "",
            f"Run {meta['started']}, {meta['duration_s']} s, {meta['cpu_count']} CPUs, "
            f"Python {meta['python']}, LiteLLM {meta['litellm'] or 'not run'}.",
            "Produced by `make bench` (`python -m benchmarks.gateway`); every figure below "
            "comes from that command's own output in the same run.",
            "",
            "## Targets (measured, not asserted)",
            *headline(rs),
            "",
            "## Setup",
            "- (a) direct: the load generator straight to a `simulator` replica; "
            "(b) lingyun: `lingyun serve` with an `openai-compatible` deployment whose "
            "base_url is that same replica; (c) litellm: LiteLLM proxy, one worker, "
            "configured for that same replica.",
            *[f"- {n}" for n in meta["notes"]],
            f"- CPU pinning (taskset): replica on CPU {lay['replica']}, load generator on "
            f"CPU {lay['loadgen']}, gateway under test on CPU {lay['gateway']}. On 2 cores the "
            "replica and load generator share one core and the gateway has the other, so the "
            "direct run is limited by that shared core and a gateway's figures include one "
            "core of its own; gateway CPU time is measured from /proc (psutil), not inferred.",
            f"- Load average (1/5/15 min) at start {meta.get('loadavg_start')}, at end "
            f"{meta.get('loadavg_end')}: anything else running on the machine competes for "
            "the same cores and widens the run-to-run spread; compare ratios, not absolutes.",
            "- Requests: chat completions, 16 output tokens; streams without "
            "`include_usage` (the gateway still asks the replica for usage and strips it). "
            "Each run is preceded by an unmeasured warm-up round (one request per worker).",
            "- `sim-0ms`: no model delay (measures gateway overhead); `sim-50ms`: 50 ms to "
            "first token, 20 ms per token.",
            "- Added latency = gateway percentile − direct percentile at the same pace, mode "
            "and concurrency; added TTFT likewise for the first SSE event.",
            "",
            "Profiling (py-spy) findings and before/after figures: `PROFILING.md`.",
            "",
            "## Results",
            table(rs),
            "",
            f"![requests/s and p50 latency]({png})",
            "",
        ]
    )


def write(doc: dict[str, Any], results: Path) -> None:
    rs = doc.get("rows") or rows(doc["runs"])
    tag = doc["meta"]["tag"]
    png = f"{tag}.png"
    plot(rs, results / png)
    md = results / ("RESULTS.md" if tag == "gateway" else f"RESULTS-{tag}.md")
    md.write_text(markdown(doc, rs, png))
    print(f"wrote {md} and {results / png}")
