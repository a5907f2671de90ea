"""Time to first paint of the console overview with 30 days of data for 10 tenants, and of
the operator's provider mix over all of it.

Seeds a fresh SQLite data dir with usage rows and ledger entries (written directly: the
point is the read side), starts ``lingyun serve``, signs in through the setup link in
Chromium and reads the overview's first-contentful-paint and the server's response time.

    PYTHONPATH=src:. python -m benchmarks.console.overview [--per-day 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from playwright.sync_api import Page, sync_playwright
from sqlalchemy import insert

from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry
from lingyun.store.models import UsageRecord
from lingyun.tenancy.service import TenancyService
from tests.support.browser import ADMIN_EMAIL, ADMIN_PASSWORD, CHROMIUM, CHROMIUM_ARGS, setup_url
from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer

TENANTS, DAYS = 10, 30


async def seed(url: str, per_day: int) -> list[str]:
    db = Database(url)
    await db.migrate()
    ids = []
    now = datetime.now(UTC)
    for t in range(TENANTS):
        tenant = await TenancyService(db).create_tenant(f"tenant{t}")
        project = (await TenancyService(db).list_projects(tenant.id))[0]
        ids.append(tenant.id)
        usage, ledger = [], []
        for d in range(DAYS):
            for i in range(per_day):
                when = now - timedelta(days=d, seconds=i)
                rid = f"req-{t}-{d}-{i}"
                model = ("sim", "sim-b", "sim-c")[i % 3]
                usage.append({"request_id": rid, "created_at": when, "tenant_id": tenant.id,
                              "project_id": project.id, "key_id": "key_x", "model": model,
                              "endpoint": "chat", "prompt_tokens": 100, "completion_tokens": 50,
                              "latency_ms": 120.0, "ttft_ms": 20.0 + i % 30,
                              "status_code": 200 if i % 50 else 500})  # fmt: skip
                ledger.append({"entry_key": f"usage:{rid}", "kind": "usage", "created_at": when,
                               "tenant_id": tenant.id, "project_id": project.id, "model": model,
                               "prompt_tokens": 100, "completion_tokens": 50,
                               "amount": Decimal("-0.0006")})  # fmt: skip
        async with db.session() as s:
            await s.execute(insert(UsageRecord), usage)
            await s.execute(insert(LedgerEntry), ledger)
            await s.commit()
    await db.close()
    return ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-day", type=int, default=200, help="requests per tenant per day")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="console-bench-"))
    url = fresh_sqlite(data_dir)
    started = time.perf_counter()
    tenant_ids = asyncio.run(seed(url, args.per_day))
    rows = TENANTS * DAYS * args.per_day
    print(f"seeded {rows} requests ({TENANTS} tenants x {DAYS} days) in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    server = LingyunServer(data_dir=data_dir, database_url=url,
                           models=[{"name": "sim", "engine": "simulator"}])  # fmt: skip
    server.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(base_url=server.base_url).new_page()
            page.goto(setup_url(server))
            page.get_by_label("Email").fill(ADMIN_EMAIL)
            page.get_by_label("Password").fill(ADMIN_PASSWORD)
            page.get_by_role("button", name="Create the platform admin").click()
            page.wait_for_url("**/console")
            overview = [paint(page, f"/console?tenant={tenant_ids[run % TENANTS]}")
                        for run in range(args.runs)]  # fmt: skip
            mix = [paint(page, "/console/ops/mix") for _ in range(args.runs)]
            browser.close()
    finally:
        server.stop()
    report(f"overview, {args.per_day * DAYS} requests in the tenant's window", overview)
    report(f"provider mix, {rows} requests of all {TENANTS} tenants", mix)


def paint(page: Page, url: str) -> tuple[float, float]:
    """(server response, first contentful paint) in ms for one load of ``url``."""
    page.goto(url)
    timing = page.evaluate("""() => new Promise(resolve => {
        const nav = performance.getEntriesByType('navigation')[0];
        new PerformanceObserver(list => {
            const paint = list.getEntriesByName('first-contentful-paint')[0];
            if (paint) resolve({ttfb: nav.responseStart - nav.requestStart, fcp: paint.startTime});
        }).observe({type: 'paint', buffered: true});
    })""")
    return float(timing["ttfb"]), float(timing["fcp"])


def report(what: str, runs: list[tuple[float, float]]) -> None:
    ttfb, fcp = [r[0] for r in runs], [r[1] for r in runs]
    print(f"{what}, {len(runs)} runs:")
    print(f"  server response (TTFB) median {statistics.median(ttfb):.0f} ms, "
          f"max {max(ttfb):.0f} ms")  # fmt: skip
    print(f"  first contentful paint median {statistics.median(fcp):.0f} ms, "
          f"max {max(fcp):.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
