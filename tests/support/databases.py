"""Real databases for the suite: a fresh SQLite file, or a fresh PostgreSQL database.

PostgreSQL is reached at ``LINGYUN_TEST_POSTGRES_URL`` (default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``); each test session creates its own
database next to ``test`` and drops it afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "LINGYUN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("LINGYUN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_postgres() -> Iterator[str]:
    name = f"lingyun_test_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fresh_sqlite(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'lingyun.db'}"
