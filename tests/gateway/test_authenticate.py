"""The key cache under a flood of made-up keys: real keys stay cached, counted in queries."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from lingyun.errors import AuthenticationError, ServiceUnavailableError
from lingyun.gateway.authenticate import Authenticator
from lingyun.store.db import Database
from lingyun.tenancy.keys import hash_secret
from lingyun.tenancy.service import KeyInfo, TenancyService

pytestmark = pytest.mark.anyio

FLOOD = 2000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")
    await database.migrate()
    yield database
    await database.close()


def _count_selects(db: Database) -> list[str]:
    seen: list[str] = []

    def on_execute(*args: Any) -> None:
        if str(args[2]).lstrip().upper().startswith("SELECT"):
            seen.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", on_execute)
    return seen


async def test_a_random_key_flood_leaves_real_keys_cached(db: Database) -> None:
    tenancy = TenancyService(db)
    await tenancy.create_tenant("flood")
    real = [f"Bearer {(await tenancy.create_key('flood')).key}" for _ in range(5)]
    # A cache far smaller than the flood: before, made-up keys pushed real ones out.
    auth = Authenticator(tenancy.lookup_key, ttl_s=600, max_entries=500)
    for header in real:
        await auth.authenticate(header)
    lookups = _count_selects(db)
    for n in range(FLOOD):
        with pytest.raises(AuthenticationError):
            await auth.authenticate(f"Bearer sk-ly-{secrets.token_hex(16)}")
        if n % 100 == 0:
            await auth.authenticate(real[0])  # one real key in steady use meanwhile
    assert len(lookups) == FLOOD  # one query per made-up key, none for the real one
    lookups.clear()
    for header in real:
        assert (await auth.authenticate(header)).tenant_name == "flood"
    assert lookups == []  # 0 database lookups for real keys after the flood


async def test_an_unknown_key_is_looked_up_once_then_refused_from_memory(db: Database) -> None:
    auth = Authenticator(TenancyService(db).lookup_key, ttl_s=600)
    lookups = _count_selects(db)
    for _ in range(50):
        with pytest.raises(AuthenticationError):
            await auth.authenticate("Bearer sk-ly-not-a-key-0000000000")
    assert len(lookups) == 1


async def test_a_known_key_is_served_from_the_cache_while_the_database_is_away() -> None:
    known = KeyInfo("key_1", "ten_1", "t", "prj_1", "default", None, 1.0)
    away = False

    async def lookup(digest: str) -> KeyInfo | None:
        if away:
            raise ServiceUnavailableError("database away", headers={"Retry-After": "2"})
        return known if digest == hash_secret("sk-known") else None

    auth = Authenticator(lookup, ttl_s=0.0, max_stale_s=300)
    assert await auth.authenticate("Bearer sk-known") == known
    away = True
    assert await auth.authenticate("Bearer sk-known") == known  # stale, but confirmed lately
    with pytest.raises(ServiceUnavailableError):  # never seen: cannot be checked, so 503
        await auth.authenticate("Bearer sk-other")
