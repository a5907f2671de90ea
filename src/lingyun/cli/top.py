"""``lingyun top``: a live view of every model on a running server, from its /metrics.

Refreshes each ``--interval`` seconds: requests/s, tokens/s, TTFT p50/p95, in flight, queued,
errors, replicas up/total. ``--once --json`` scrapes twice, one interval apart, prints one
JSON document and exits, for scripts.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import httpx
import typer
from rich.table import Table

from lingyun.observability.snapshot import ModelFigures, Samples, figures, parse


def _scrape(client: httpx.Client, url: str) -> Samples:
    resp = client.get(f"{url.rstrip('/')}/metrics")
    if resp.status_code != 200:
        raise typer.BadParameter(f"{url}/metrics answered {resp.status_code}: {resp.text[:200]}")
    return parse(resp.text)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _table(rows: list[ModelFigures], url: str) -> Table:
    table = Table(title=f"Lingyun at {url}", title_justify="left")
    for col in ("model", "req/s", "out tok/s", "TTFT p50 ms", "p95 ms", "in flight",
                "queued", "errors", "requests", "replicas"):  # fmt: skip
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            r.model,
            f"{r.requests_per_s:.1f}",
            f"{r.completion_tokens_per_s:.1f}",
            _ms(r.ttft_p50_s),
            _ms(r.ttft_p95_s),
            str(r.in_flight),
            str(r.queued),
            str(r.errors),
            str(r.requests),
            f"{r.replicas_up}/{r.replicas}",
        )
    return table


def top(
    url: Annotated[
        str, typer.Option(help="The server to watch.", envvar="LINGYUN_URL")
    ] = "http://127.0.0.1:8000",
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print once and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with --once).")] = False,
    token: Annotated[
        str | None, typer.Option(help="The server's metrics_token.", envvar="LINGYUN_METRICS_TOKEN")
    ] = None,
) -> None:
    """A live view of every model: traffic, latency, queues, errors and replicas."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=10, headers=headers, trust_env=False) as client:
        try:
            before, t0 = _scrape(client, url), time.monotonic()
            if once:
                time.sleep(interval)  # a window for the rates
                after = _scrape(client, url)
                rows = figures(before, after, time.monotonic() - t0)
                if as_json:
                    doc = {"url": url, "at": time.time(), "window_s": interval,
                           "models": [r.as_dict() for r in rows]}  # fmt: skip
                    typer.echo(json.dumps(doc, indent=2))
                else:
                    from rich.console import Console

                    Console().print(_table(rows, url))
                return
            _live(client, url, interval, before, t0)
        except httpx.HTTPError as exc:
            typer.echo(f"cannot reach {url}: {exc}", err=True)
            raise typer.Exit(1) from exc


def _live(client: httpx.Client, url: str, interval: float, before: Samples, t0: float) -> None:
    from rich.live import Live

    with Live(_table(figures(None, before, 0), url), refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(interval)
                after, t1 = _scrape(client, url), time.monotonic()
                live.update(_table(figures(before, after, t1 - t0), url))
                before, t0 = after, t1
        except KeyboardInterrupt:
            return
