"""Stateless gateways: two ``lingyun serve`` processes on one PostgreSQL.

Both serve the same tenants and deployments; exactly one of them (the lease owner) starts
the deployment's replicas, the other routes to them through the serving registry, and takes
them over when the owner stops. About 20 s.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from tests.support.databases import _dsn, fresh_postgres
from tests.support.server import LingyunServer
from tests.support.tenancy import _create_root, login, ok, poll

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
MODELS: list[dict[str, Any]] = [{"name": "sim", "engine": "simulator", "replicas": 2}]
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


def workers_of(server: LingyunServer) -> list[int]:
    """Replica processes this gateway started (``lingyun.cli.worker`` children)."""
    assert server.proc is not None
    return [
        p.pid
        for p in psutil.Process(server.proc.pid).children(recursive=True)
        if "lingyun.cli.worker" in " ".join(p.cmdline())
    ]


def registry(url: str) -> list[tuple[str, str, bool]]:
    async def rows() -> list[tuple[str, str, bool]]:
        conn = await asyncpg.connect(_dsn(url))
        try:
            found = await conn.fetch(
                "SELECT replica_id, owner, healthy FROM serving_replicas ORDER BY replica_id"
            )
        finally:
            await conn.close()
        return [(r["replica_id"], r["owner"], r["healthy"]) for r in found]

    return asyncio.run(rows())


def chat(server: LingyunServer, key: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_two_gateways_one_set_of_replicas(postgres_url: str, tmp_path: Path) -> None:
    # one group: the registry carries replica secrets sealed with the shared cluster secret
    group = {"LINGYUN_CLUSTER_SECRET": secrets.token_urlsafe(24)}
    a = LingyunServer(data_dir=tmp_path / "a", database_url=postgres_url, models=MODELS, env=group)
    b = LingyunServer(data_dir=tmp_path / "b", database_url=postgres_url, models=MODELS, env=group)
    email = f"root-{secrets.token_hex(3)}@lingyun.test"
    _create_root(a, email)
    try:
        a.start(timeout_s=60)
        b.start(timeout_s=60)  # healthy through the replicas `a` published

        # The replicas were started once: by `a`, the lease owner; `b` started none.
        assert len(workers_of(a)) == 2
        assert workers_of(b) == []
        rows = registry(postgres_url)
        assert [r[0] for r in rows] == ["sim-0", "sim-1"]
        assert {r[1] for r in rows} == {f"{_host()}:{a.port}"}

        # A key created through one gateway's admin API works through the other at once.
        with login(a.base_url, email) as root:
            tenant = ok(root.post("/tenants", json={"name": f"acme-{secrets.token_hex(3)}"}), 201)
            [project] = ok(root.get(f"/tenants/{tenant['id']}/projects"))["data"]
            key = ok(root.post(f"/projects/{project['id']}/keys", json={"name": "k"}), 201)["key"]
        assert poll(lambda: chat(b, key).status_code == 200, timeout_s=1.0) < 1.0
        for server in (a, b, a, b):
            resp = chat(server, key)
            assert resp.status_code == 200, resp.text

        # The owner goes away: the other takes the lease over and starts its own replicas.
        a.stop()  # a clean stop releases the lease at once (a crash: after its expiry)
        took_over = poll(lambda: len(workers_of(b)) == 2, timeout_s=10.0, interval_s=0.2)
        b.wait_healthy(["sim"], timeout_s=30)
        assert took_over < 3.0
        assert chat(b, key).status_code == 200
        assert {r[1] for r in registry(postgres_url)} == {f"{_host()}:{b.port}"}
    finally:
        a.stop()
        b.stop()
    assert registry(postgres_url) == []  # a clean stop leaves no replica published


def test_gateways_outside_a_group_each_run_their_own_replicas(
    postgres_url: str, tmp_path: Path
) -> None:
    """Without LINGYUN_CLUSTER_SECRET a gateway could not call another's replicas (they answer
    only their own gateway's secret), so it takes no lease and follows nobody."""
    one = [{"name": "sim", "engine": "simulator"}]
    a = LingyunServer(data_dir=tmp_path / "a", database_url=postgres_url, models=one)
    b = LingyunServer(data_dir=tmp_path / "b", database_url=postgres_url, models=one)
    email = f"root-{secrets.token_hex(3)}@lingyun.test"
    _create_root(a, email)
    try:
        a.start(timeout_s=60)
        b.start(timeout_s=60)
        assert len(workers_of(a)) == len(workers_of(b)) == 1
        with login(a.base_url, email) as root:
            tenant = ok(root.post("/tenants", json={"name": f"acme-{secrets.token_hex(3)}"}), 201)
            [project] = ok(root.get(f"/tenants/{tenant['id']}/projects"))["data"]
            key = ok(root.post(f"/projects/{project['id']}/keys", json={"name": "k"}), 201)["key"]
        for server in (a, b, a, b):
            resp = chat(server, key)
            assert resp.status_code == 200, resp.text
        assert registry(postgres_url) == []  # nothing published: nobody could use it
    finally:
        a.stop()
        b.stop()


def _host() -> str:
    import socket

    return socket.gethostname()
