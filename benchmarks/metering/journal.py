"""``python -m benchmarks.metering.journal``: the journal's own cost per leased request.

In one process, against a fresh SQLite database: reserve (against the lease), one delivered
line, settle, for N requests in a row, folds included. Prints wall and CPU time per request
(CPU includes the database thread). No gateway, no HTTP: what metering adds at the least.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from lingyun.metering import accounts
from lingyun.metering.deliveries import DeliveryLog
from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.journal import Journal
from lingyun.metering.pricing import UnitPrices
from lingyun.store.db import Database
from lingyun.tenancy.service import TenancyService

PRICES = UnitPrices("CNY", Decimal(1), Decimal(1), Decimal(1000), Decimal(1000))


async def measure(n: int) -> tuple[float, float, int]:
    d = Path(tempfile.mkdtemp())
    db = Database(f"sqlite+aiosqlite:///{d}/bench.db")
    await db.migrate()
    svc = TenancyService(db)
    tenant = await svc.create_tenant("bench")
    _, project = await svc.project("bench", "default")
    await accounts.credit(db, tenant.id, Decimal(1000))
    journal = Journal(db, owner="bench", deliveries=DeliveryLog(d / "deliveries.log"))
    await journal.start()

    async def one() -> None:
        h = Hold(
            request_id=f"req_{secrets.token_hex(8)}", tenant_id=tenant.id,
            project_id=project.id, key_id="key", model="m", period="2026-12", prices=PRICES,
            prompt_upper=200, output_upper=50, prompt_estimate=50,
        )  # fmt: skip
        await journal.reserve(h)
        journal.delivered(h.request_id, (20, 5))
        journal.settle(Settlement(h, 20, 0, 5, 0, "served"))

    for _ in range(200):  # warm up: the lease is grown, caches filled
        await one()
    await journal.drain()
    cpu, wall, commits = time.process_time(), time.perf_counter(), journal._committed
    for _ in range(n):
        await one()
    await journal.drain()
    result = (
        (time.perf_counter() - wall) / n,
        (time.process_time() - cpu) / n,
        journal._committed - commits,
    )
    await journal.stop()
    await db.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    n = parser.parse_args().requests
    wall, cpu, commits = asyncio.run(measure(n))
    print(f"{n} leased requests: wall {wall * 1e6:.0f} us, CPU {cpu * 1e6:.0f} us per request, "
          f"{commits} commits")  # fmt: skip


if __name__ == "__main__":
    main()
