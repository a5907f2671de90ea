"""The request path stays off the database: key lookups are cached, grants are read from
memory, ``last_used_at`` is written in batches. Counted, not assumed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from lingyun.gateway.authenticate import Authenticator
from lingyun.store.db import Database
from lingyun.store.models import ApiKey
from lingyun.tenancy.grants import GrantService
from lingyun.tenancy.runtime import TenancyRuntime
from lingyun.tenancy.service import TenancyService

pytestmark = pytest.mark.anyio

REQUESTS = 2000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'hot.db'}")
    await database.migrate()
    yield database
    await database.close()


def _count_statements(db: Database) -> list[str]:
    seen: list[str] = []

    def on_execute(*args: Any) -> None:
        if not str(args[2]).startswith("BEGIN"):  # SQLite's explicit transaction starts
            seen.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", on_execute)
    return seen


async def test_requests_make_no_queries_until_the_background_tasks_run(db: Database) -> None:
    tenancy = TenancyService(db)
    await tenancy.create_tenant("hot")
    created = await tenancy.create_key("hot")
    await GrantService(db).grant((await tenancy.tenant("hot")).id, "m1")
    runtime = TenancyRuntime(db)
    await runtime.refresh_grants()
    auth = Authenticator(tenancy.lookup_key, ttl_s=60, on_use=runtime.key_used)
    header = f"Bearer {created.key}"
    key = await auth.authenticate(header)  # the one lookup (then cached)
    statements = _count_statements(db)
    for _ in range(REQUESTS):
        key = await auth.authenticate(header)
        assert runtime.access.allowed(key, "m1") and not runtime.access.allowed(key, "m2")
    assert statements == []
    await runtime.flush_used()  # one batched UPDATE for all those requests
    assert len([s for s in statements if s.lstrip().upper().startswith("UPDATE")]) == 1
    async with db.session() as s:
        assert (await s.scalar(select(ApiKey.last_used_at))) is not None
    statements.clear()
    await runtime.refresh_grants()  # nothing changed: one cheap fingerprint query
    assert len(statements) == 1
