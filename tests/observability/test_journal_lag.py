"""The metering journal's lag on /metrics: exact backlog gauges and one commit-time
observation per batch commit, read from a real journal over a real (SQLite) database."""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lingyun.metering import accounts
from lingyun.metering.holds import Settlement
from lingyun.metering.journal import Journal
from lingyun.observability import journal_lag, metrics
from lingyun.store.db import Database
from lingyun.tenancy.service import TenancyService
from tests.metering.test_journal import hold
from tests.support.databases import fresh_sqlite

pytestmark = pytest.mark.anyio


def _scrape(collector: journal_lag.JournalCollector) -> dict[str, float]:
    text = metrics.render([collector]).decode()
    return {
        s.name: float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("lingyun_journal_")
    }


async def test_backlog_and_commit_times_are_exact(tmp_path: Path) -> None:
    db = Database(fresh_sqlite(tmp_path))
    await db.migrate()
    tenancy = TenancyService(db)
    tenant = await tenancy.create_tenant(f"lag-{secrets.token_hex(3)}")
    _, project = await tenancy.project(tenant.name, "default")
    await accounts.credit(db, tenant.id, Decimal(10))
    journal = Journal(db, owner=f"gw-{secrets.token_hex(3)}")
    collector = journal_lag.watch(journal)
    await journal.start()
    try:
        before = _scrape(collector)
        assert before["lingyun_journal_queued_reservations"] == 0
        assert before["lingyun_journal_unsettled_requests"] == 0
        holds = [hold(tenant.id, project.id) for _ in range(3)]
        for h in holds:
            await journal.reserve(h)  # each waits for its own commit
        commits = journal._committed
        # Three finished requests, not yet committed: nothing yields to the commit task here.
        for h in holds:
            journal.settle(Settlement(h, 0, 0, 4, 0, "served"))
        queued = _scrape(collector)
        assert queued["lingyun_journal_unsettled_requests"] == 3
        assert queued["lingyun_journal_queued_reservations"] == 0
        await journal.drain()
        after = _scrape(collector)
    finally:
        await journal.stop()
        await db.close()
    assert after["lingyun_journal_unsettled_requests"] == 0
    assert journal._committed == commits + 1  # the three settlements shared one commit
    observed = after["lingyun_journal_commit_seconds_count"]
    assert observed - before["lingyun_journal_commit_seconds_count"] == 4  # 3 reserves + 1
    assert (
        after["lingyun_journal_commit_seconds_sum"] > before["lingyun_journal_commit_seconds_sum"]
    )
