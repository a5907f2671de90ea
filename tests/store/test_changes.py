"""The change feed: a commit on any connection reaches the subscribers of its topic only,
hot columns stay quiet, and the triggers (not the services) do the bumping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import anyio
import pytest
from sqlalchemy import text, update

from lingyun.metering.pricing import set_price
from lingyun.store.changes import ChangeFeed
from lingyun.store.channels import ChannelRow
from lingyun.store.db import Database
from lingyun.store.ledger import FreeQuota
from lingyun.store.revisions import TOPICS

pytestmark = pytest.mark.anyio
BOUND_S = 10  # a deadline for the test to fail by, not a claim about the feed's speed


@pytest.fixture
async def db(fresh_database_url: str) -> AsyncIterator[Database]:
    database = Database(fresh_database_url)
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
async def feed(db: Database) -> AsyncIterator[ChangeFeed]:
    changes = ChangeFeed(db, tick_s=0.05)
    await changes.start()
    yield changes
    await changes.stop()


class Seen:
    """A subscriber that counts its reloads and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.calls = 0
        self.event = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.event.set()

    async def next(self) -> None:
        with anyio.fail_after(BOUND_S):
            await self.event.wait()
        self.event.clear()


async def _revisions(db: Database) -> dict[str, int]:
    async with db.session() as s:
        rows = (await s.execute(text("SELECT topic, revision FROM revisions"))).all()
    return {t: int(r) for t, r in rows}


async def test_a_commit_elsewhere_reloads_its_topic_only(
    db: Database, feed: ChangeFeed, fresh_database_url: str
) -> None:
    prices, grants = Seen(), Seen()
    feed.subscribe("prices", prices)
    feed.subscribe("grants", grants)
    feed.follow()
    await feed.ticked(3)
    assert prices.calls == grants.calls == 0  # nothing changed, nothing reloaded
    other = Database(fresh_database_url)  # another gateway's (or the CLI's) connection
    try:
        await set_price(other, "m", input_per_m=Decimal(1), output_per_m=Decimal(2))
    finally:
        await other.close()
    await prices.next()
    await feed.ticked(3)
    assert (prices.calls, grants.calls) == (1, 0)


async def test_a_raw_sql_write_bumps_its_topic(db: Database) -> None:
    """Triggers, not the ORM: a statement no service wrote still moves the revision."""
    await set_price(db, "m", input_per_m=Decimal(1), output_per_m=Decimal(2))
    before = await _revisions(db)
    assert set(before) == set(TOPICS)
    async with db.session() as s:  # an operator's hand fix
        await s.execute(text("UPDATE prices SET output_per_m = 3 WHERE model = 'm'"))
        await s.commit()
    after = await _revisions(db)
    assert after.pop("prices") == before.pop("prices") + 1
    assert after == before  # no other topic moved


async def test_hot_columns_do_not_bump_but_overrides_do(db: Database) -> None:
    async with db.session() as s:
        s.add(FreeQuota(tenant_id="ten_x", model="m", granted_tokens=100))
        s.add(ChannelRow(deployment="d", channel="c", disabled=False))
        await s.commit()
    before = await _revisions(db)
    async with db.session() as s:  # what the journal and the channel keeper write all day
        await s.execute(update(FreeQuota).values(used_tokens=FreeQuota.used_tokens + 5))
        await s.execute(update(ChannelRow).values(state="open", requests=7))
        await s.commit()
    assert await _revisions(db) == before
    async with db.session() as s:  # what an operator writes
        await s.execute(update(ChannelRow).values(disabled=True, disabled_by="ops"))
        await s.execute(update(FreeQuota).values(granted_tokens=200))
        await s.commit()
    after = await _revisions(db)
    assert after["channels"] == before["channels"] + 1
    assert after["billing-scopes"] == before["billing-scopes"] + 1


async def test_a_failed_reload_is_retried(db: Database, feed: ChangeFeed) -> None:
    attempts: list[int] = []
    done = asyncio.Event()

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("database blinked")
        done.set()

    feed.subscribe("prices", flaky)
    feed.follow()
    await set_price(db, "m", input_per_m=Decimal(1), output_per_m=Decimal(2))
    with anyio.fail_after(BOUND_S):
        await done.wait()
    assert len(attempts) == 2


async def test_triggers_come_back_after_a_table_rebuild(db: Database) -> None:
    """SQLite's batch migrations rebuild tables and lose their triggers; every upgrade puts
    them back (PostgreSQL: a dropped trigger, the same way)."""
    table = "prices"
    async with db.session() as s:
        if db.is_sqlite:
            names = (
                await s.execute(
                    text("SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name=:t"),
                    {"t": table},
                )
            ).scalars()
            for name in list(names):
                await s.execute(text(f'DROP TRIGGER "{name}"'))
        else:
            names = (
                await s.execute(
                    text(
                        "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                        "WHERE c.relname = :t AND tgname LIKE 'lingyun_rev_%'"
                    ),
                    {"t": table},
                )
            ).scalars()
            for name in list(names):
                await s.execute(text(f'DROP TRIGGER "{name}" ON {table}'))
        await s.commit()
    await db.migrate()
    before = await _revisions(db)
    await set_price(db, "m", input_per_m=Decimal(1), output_per_m=Decimal(2))
    assert (await _revisions(db))["prices"] > before["prices"]
