"""Prompt logging, off by default: a canary prompt from a project without it is nowhere (no
file under the data dir, SQLite's database and WAL included, no PostgreSQL dump, no log); a
project that turned it on keeps prompt and completion until its retention passes, then the
purger erases them from the disk as well as from the table."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from lingyun.store.db import Database
from lingyun.store.prompts import PromptRecord
from lingyun.tenancy.prompt_logging import set_prompt_logging
from lingyun.tenancy.service import TenancyService
from tests.observability.support import migrate, wait_for
from tests.support.provision import new_key
from tests.support.server import LingyunServer

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path, fresh_database_url: str) -> Iterator[LingyunServer]:
    srv = LingyunServer(
        data_dir=tmp_path,  # SQLite's file (and its WAL) lives here too
        database_url=fresh_database_url,
        models=[{"name": "sim", "engine": "simulator", "args": {"output_tokens": 4}}],
        extra_config={"request_log": "requests.jsonl", "prompt_log_purge_interval_s": 0.1},
    )
    migrate(srv)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _places_with(srv: LingyunServer, needle: str) -> list[str]:
    """Every file under the data dir (database, WAL, request log, server log) and, on
    PostgreSQL, the database's whole dump, that holds ``needle``."""
    raw = needle.encode()
    found = [str(p) for p in srv.data_dir.rglob("*") if p.is_file() and raw in p.read_bytes()]
    url = make_url(srv.database_url)
    if url.get_backend_name() == "postgresql":
        dump = subprocess.run(
            ["pg_dump", "-h", url.host or "127.0.0.1", "-U", url.username or "postgres",
             "-p", str(url.port or 5432), url.database or ""],
            capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        assert b"CREATE TABLE public.prompt_logs" in dump  # the dump is of the right schema
        if raw in dump:
            found.append("pg_dump")
    return found


def _stored(srv: LingyunServer) -> list[PromptRecord]:
    async def main() -> list[PromptRecord]:
        db = Database(srv.database_url)
        try:
            async with db.session() as s:
                return list((await s.scalars(select(PromptRecord))).all())
        finally:
            await db.close()

    return asyncio.run(main())


def _set_retention(srv: LingyunServer, tenant: str, project: str, seconds: int) -> None:
    """What ``lingyun projects prompt-logging`` does, without a CLI process's start."""

    async def main() -> None:
        db = Database(srv.database_url)
        try:
            _, found = await TenancyService(db).project(tenant, project)
            await set_prompt_logging(db, found.id, seconds)
        finally:
            await db.close()

    asyncio.run(main())


def _send(srv: LingyunServer, key: str, canary: str) -> str:
    """The canary by chat (whole and streamed) and completions; the streamed answer's text."""
    client = srv.client(key, max_retries=0)
    msgs = [{"role": "user", "content": f"secret words {canary}"}]
    client.chat.completions.create(model="sim", messages=msgs)  # type: ignore[arg-type]
    chunks = client.chat.completions.create(model="sim", messages=msgs, stream=True)  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    client.completions.create(model="sim", prompt=canary)
    return text


def _logged(srv: LingyunServer, n: int) -> bool:
    path = srv.data_dir / "requests.jsonl"
    return path.exists() and len(path.read_text().splitlines()) >= n


def test_a_canary_is_nowhere_unless_its_project_logs_prompts_and_gone_after_retention(
    server: LingyunServer,
) -> None:
    quiet_key, _ = new_key(server, "canary-org")
    loud_key, _ = new_key(server, "canary-org", "kept")
    server.cli("projects", "prompt-logging", "kept", "--tenant", "canary-org",
               "--retention", "1h")  # fmt: skip

    quiet = f"QUIET-{secrets.token_hex(8)}"
    _send(server, quiet_key, quiet)
    wait_for(lambda: _logged(server, 3), what="three request log lines")
    assert _places_with(server, quiet) == []

    loud = f"LOUD-{secrets.token_hex(8)}"
    streamed = _send(server, loud_key, loud)
    rows = wait_for(lambda: len(rows := _stored(server)) == 3 and rows, what="three prompt rows")
    assert all(loud in r.prompt for r in rows) and not any(quiet in r.prompt for r in rows)
    assert streamed and streamed in {r.completion for r in rows}
    assert all(r.completion for r in rows)  # whole answers, streams and completions alike
    places = _places_with(server, loud)
    assert places and not any(p.endswith(("requests.jsonl", "serve.log")) for p in places)

    # A retention of one second from now caps what is stored; the purger then erases it.
    _set_retention(server, "canary-org", "kept", 1)
    wait_for(lambda: _stored(server) == [], what="the purge after the retention")
    wait_for(lambda: not _places_with(server, loud), what="no trace on disk")
    assert _places_with(server, quiet) == []
