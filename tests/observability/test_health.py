"""/healthz and /readyz: ready only with the database reachable, migrated, and replicas up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from lingyun.config import DeploymentConfig
from lingyun.observability.health import Readiness, migration_heads
from lingyun.serving.supervisor import DeploymentStatus, ReplicaState, ReplicaStatus
from lingyun.store.db import Database
from tests.observability.support import wait_for
from tests.support.databases import POSTGRES_URL, fresh_postgres, fresh_sqlite
from tests.support.server import LingyunServer

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[tuple[LingyunServer, str]]:
    with fresh_postgres() as url:
        srv = LingyunServer(
            data_dir=tmp_path,
            database_url=url,
            models=[{"name": "sim", "engine": "simulator"}],
        )
        srv.start()
        try:
            yield srv, str(make_url(url).database)
        finally:
            srv.stop()
            asyncio.run(_admin(f'ALTER DATABASE "{make_url(url).database}" ALLOW_CONNECTIONS true'))


async def _admin(*sql: str) -> None:
    dsn = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


def _ready(server: LingyunServer) -> tuple[int, dict[str, object]]:
    resp = httpx.get(f"{server.base_url}/readyz", timeout=10)
    return resp.status_code, resp.json()


def test_readyz_follows_the_database(pg_server: tuple[LingyunServer, str]) -> None:
    server, name = pg_server
    assert httpx.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
    status, body = _ready(server)
    assert status == 200, body
    assert body["checks"] == {"database": "ok", "migrations": "ok", "replicas": "ok"}
    # The database stops taking connections, and those open are cut.
    asyncio.run(
        _admin(
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
    )
    status, body = wait_for(
        lambda: (r := _ready(server))[0] == 503 and r, what="/readyz to turn unready"
    )
    checks = body["checks"]
    assert isinstance(checks, dict) and str(checks["database"]).startswith("unreachable")
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200  # alive all along
    asyncio.run(_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    status, body = wait_for(
        lambda: (r := _ready(server))[0] == 200 and r, what="/readyz to be ready again"
    )
    assert body["status"] == "ready"


def _status(name: str, healthy: bool, error: str | None = None) -> DeploymentStatus:
    state = ReplicaState.HEALTHY if healthy else ReplicaState.STARTING
    replica = ReplicaStatus(f"{name}-0", state, healthy, "http://127.0.0.1:1/v1")
    return DeploymentStatus(name, "simulator", (replica,) if error is None else (), error)


@pytest.mark.parametrize(
    ("deps", "statuses", "heads", "ready", "replicas"),
    [
        pytest.param([("a", 1, None)], [("a", True, None)], None, True, "ok", id="all-up"),
        pytest.param([("a", 1, None)], [("a", False, None)], None, False, {"not_ready": ["a"]}, id="starting"),
        pytest.param([("a", 0, None)], [("a", False, None)], None, True, "ok", id="scaled-to-zero"),
        pytest.param([("a", 2, 0)], [("a", False, None)], None, True, "ok", id="min-replicas-zero"),
        pytest.param([("a", 1, None)], [("a", False, "no API key")], None, True, "ok", id="broken-config-reported"),
        pytest.param([("a", 1, None)], [("a", True, None)], {"20990101_9999"}, False, "ok", id="migrations-behind"),
    ],
)  # fmt: skip
def test_readiness_rules(
    tmp_path: Path,
    deps: list[tuple[str, int, int | None]],
    statuses: list[tuple[str, bool, str | None]],
    heads: set[str] | None,
    ready: bool,
    replicas: object,
) -> None:
    async def main() -> tuple[bool, dict[str, object]]:
        db = Database(fresh_sqlite(tmp_path))
        await db.migrate()
        try:
            configs = [
                DeploymentConfig(name=n, engine="simulator", replicas=r, min_replicas=m)
                for n, r, m in deps
            ]
            sts = [_status(n, h, e) for n, h, e in statuses]
            check = Readiness(db, lambda: configs, lambda: sts, heads or migration_heads())
            return await check.check()
        finally:
            await db.close()

    got_ready, checks = asyncio.run(main())
    assert got_ready is ready
    assert checks["replicas"] == replicas
    assert (checks["migrations"] == "ok") is (heads is None)
