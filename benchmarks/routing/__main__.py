"""``python -m benchmarks.routing [--quick]``: routing policies side by side, in one run.

One ``lingyun serve`` (metering off) with four deployments of the same four simulator
replicas' configuration, which differ only in ``routing``: least-inflight, prefix (load
guard on), session, and prefix with the guard off. Each replica is the simulator with its
stand-in prefix cache: an LRU of ``--cache-tokens`` prompt tokens, prefill at
``--prefill-ms`` per uncached token one prompt at a time, at most ``--max-running``
sequences decoding at once (the rest wait). Two workloads, each against a fresh tenant
(so no cache is shared with an earlier phase):

1. sessions: closed-loop clients hold multi-turn conversations (``--turns``) over long
   shared system prompts; least-inflight vs prefix vs session. As on a real platform, the
   distinct prefixes outgrow one replica's cache but fit in all of them together: by
   default 12 prompts of 1,000 tokens against 5,120 cached tokens per replica (about five
   prompts with their conversations' tails), 20,480 over the four. Routing that spreads
   requests regardless of prompt makes every replica cycle through all 12 prompts; routing
   by prefix keeps about three on each.
2. skewed: single-turn requests, ``--hot-share`` of them on one hot system prompt (the
   rest short prompts);
   least-inflight vs prefix (guarded) vs prefix without the guard.

Per run: TTFT p50/p99, requests and output tokens per second, the prompt-cache hit ratio
(cached / prompt tokens from usage). Goals: prefix TTFT p50 at least 2x better than
least-inflight on sessions; on the skewed load, guarded prefix p99 within 1.5x of
least-inflight while unguarded prefix is not. Results: ``benchmarks/results/routing*.json``
and ``ROUTING*.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.routing.workload import Load, run_load, summary, system_prompts
from tests.support.databases import fresh_sqlite
from tests.support.provision import new_key
from tests.support.server import LingyunServer

RESULTS = Path(__file__).resolve().parents[1] / "results"
DEPLOYMENTS = {
    "least-inflight": {"routing": "least-inflight"},
    "prefix": {"routing": "prefix"},
    "session": {"routing": "session"},
    "prefix-no-guard": {"routing": "prefix", "load_guard": False},
}
PHASES = {
    "sessions": ["least-inflight", "prefix", "session"],
    "skewed": ["least-inflight", "prefix", "prefix-no-guard"],
}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.routing", description=__doc__)
    p.add_argument("--quick", action="store_true", help="short windows (under 2 minutes)")
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--prompts", type=int, default=12, help="shared system prompts")
    p.add_argument("--prompt-tokens", type=int, default=1000, help="system prompt length")
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--user-words", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--hot-share", type=float, default=0.9)
    p.add_argument("--cache-tokens", type=int, default=5120, help="per replica")
    p.add_argument("--prefill-ms", type=float, default=3.0, help="per uncached prompt token")
    p.add_argument("--ttft-ms", type=float, default=10.0)
    p.add_argument("--itl-ms", type=float, default=30.0)
    p.add_argument("--max-running", type=int, default=4)
    p.add_argument("--imbalance-abs", type=float, default=2.0)
    p.add_argument("--imbalance-ratio", type=float, default=1.5)
    p.add_argument("--phases", default="sessions,skewed", help="comma-separated")
    p.add_argument("--warmup", type=float, default=None)
    p.add_argument("--window", type=float, default=None)
    args = p.parse_args()
    args.warmup = args.warmup if args.warmup is not None else (10.0 if args.quick else 20.0)
    args.window = args.window if args.window is not None else (25.0 if args.quick else 90.0)
    return args


def _models(args: argparse.Namespace) -> list[dict[str, Any]]:
    sim = {
        "ttft_ms": args.ttft_ms,
        "itl_ms": args.itl_ms,
        "prefix_cache_tokens": args.cache_tokens,
        "prefill_ms_per_token": args.prefill_ms,
        "prefill_slots": 1,
        "max_running": args.max_running,
    }
    models = []
    for name, spec in DEPLOYMENTS.items():
        options = {
            "imbalance_abs": args.imbalance_abs,
            "imbalance_ratio": args.imbalance_ratio,
            "load_guard": spec.get("load_guard", True),
        }
        models.append(
            {
                "name": name,
                "engine": "simulator",
                "replicas": args.replicas,
                "routing": spec["routing"],
                "routing_options": options,
                "args": sim,
            }
        )
    return models


def _wait_all_replicas(server: LingyunServer, replicas: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        health = server.health()
        if all(d["healthy_replicas"] == replicas for d in health["deployments"]):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"replicas not healthy in {timeout_s}s: {health}")
        time.sleep(0.25)


def _replica_health_urls(server: LingyunServer, deployment: str) -> list[str]:
    """Each replica's own /health, found from its process's ``--port`` (same machine)."""
    (dep,) = [d for d in server.health()["deployments"] if d["name"] == deployment]
    urls = []
    for r in dep["replica_states"]:
        argv = Path(f"/proc/{r['pid']}/cmdline").read_bytes().split(b"\0")
        port = int(argv[argv.index(b"--port") + 1])
        urls.append(f"http://127.0.0.1:{port}/health")
    return urls


def _run_phases(args: argparse.Namespace, server: LingyunServer) -> dict[str, Any]:
    """Per phase, the policies' loads run at the same time, each on its own deployment: a
    busy machine's noise then falls on all of them alike."""
    out: dict[str, Any] = {}
    for p, (phase, policies) in enumerate(PHASES.items()):
        if phase not in args.phases.split(","):
            continue
        runs = []
        for i, policy in enumerate(policies):
            seed = 10 * p + i + 1
            load = Load(
                model=policy,
                key=new_key(server, f"{phase}-{policy}")[0],
                # prompts of their own per run: no run reuses what another one cached
                prompts=system_prompts(args.prompts, args.prompt_tokens, seed),
                clients=args.clients,
                turns=args.turns if phase == "sessions" else 1,
                user_words=args.user_words,
                max_tokens=args.max_tokens,
                hot_share=args.hot_share if phase == "skewed" else 0.0,
                seed=seed,
            )
            urls = _replica_health_urls(server, policy)
            runs.append(run_load(server.base_url, load, args.warmup, args.window, urls))

        async def together(runs: list[Any] = runs) -> list[Any]:
            return list(await asyncio.gather(*runs))

        out[phase] = {}
        for policy, stats in zip(policies, asyncio.run(together()), strict=True):
            out[phase][policy] = summary(stats, args.window)
            print(f"{phase:9} {policy:16} {json.dumps(out[phase][policy])}", flush=True)
    return out


def _verdict(results: dict[str, Any]) -> dict[str, Any]:
    if set(results) != set(PHASES):
        return {}
    s, k = results["sessions"], results["skewed"]
    p50_gain = s["least-inflight"]["ttft_p50_ms"] / max(s["prefix"]["ttft_p50_ms"], 1e-9)
    li_p99 = k["least-inflight"]["ttft_p99_ms"]
    guarded = k["prefix"]["ttft_p99_ms"] / li_p99
    unguarded = k["prefix-no-guard"]["ttft_p99_ms"] / li_p99
    return {
        "sessions_prefix_ttft_p50_gain": round(p50_gain, 2),
        "sessions_goal_2x": p50_gain >= 2,
        "skewed_guarded_p99_vs_least_inflight": round(guarded, 2),
        "skewed_unguarded_p99_vs_least_inflight": round(unguarded, 2),
        "skewed_goal_guard_within_1_5x": guarded <= 1.5 and unguarded > 1.5,
    }


def _markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# Routing benchmark{' (quick)' if doc['quick'] else ''}",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {doc['machine']}",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in doc["settings"].items()),
        "",
    ]
    cols = [
        "ttft_p50_ms",
        "ttft_p99_ms",
        "requests_per_s",
        "output_tokens_per_s",
        "cache_hit_ratio",
        "requests",
        "errors",
    ]
    for phase, runs in doc["results"].items():
        lines += [
            f"## {phase}",
            "",
            "| routing | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        for policy, row in runs.items():
            lines.append(f"| {policy} | " + " | ".join(str(row[c]) for c in cols) + " |")
        lines.append("")
    lines += ["## Verdict", ""] + [f"- {k}: {v}" for k, v in doc["verdict"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = _args()
    with tempfile.TemporaryDirectory(prefix="lingyun-bench-routing-") as tmp:
        root = Path(tmp)
        server = LingyunServer(
            data_dir=root,
            database_url=fresh_sqlite(root),
            models=_models(args),
            extra_config={"metering": False},
        )
        server.start()
        try:
            _wait_all_replicas(server, args.replicas)
            results = _run_phases(args, server)
        finally:
            server.stop()
    settings = {k: v for k, v in vars(args).items() if k != "quick"}
    doc = {
        "quick": args.quick,
        "command": "python -m benchmarks.routing" + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "settings": settings,
        "results": results,
        "verdict": _verdict(results),
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"routing{suffix}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / f"ROUTING{suffix}.md").write_text(_markdown(doc))
    print(json.dumps(doc["verdict"], indent=2))


if __name__ == "__main__":
    main()
