"""A project's and a key's priority: set by a platform admin (admin API or CLI), stored, and
what the gateway's key lookup hands the capacity queue (the key's over the project's, else
standard)."""

from __future__ import annotations

import asyncio

import pytest

from lingyun.store.db import Database
from lingyun.tenancy.service import TenancyService
from tests.support.tenancy import World, ok
from tests.tenancy.test_cli import cli

pytestmark = pytest.mark.postgres


def _priority(world: World, key_id: str) -> str:
    """The priority the gateway would see for this key, read as its lookup reads it."""

    async def read() -> str:
        db = Database(world.server.database_url)
        try:
            info = await TenancyService(db).live_key(key_id)
        finally:
            await db.close()
        assert info is not None
        return info.priority

    return asyncio.run(read())


def test_admin_api_sets_project_and_key_priorities(world: World) -> None:
    root, a = world.root, world.a
    key = world.new_key(a.clients["tenant_admin"], a.project, name="prio")
    assert key["priority"] is None and _priority(world, key["id"]) == "standard"
    project = ok(root.patch(f"/projects/{a.project}", json={"priority": "batch"}))
    assert project["priority"] == "batch" and _priority(world, key["id"]) == "batch"
    assert (
        ok(root.patch(f"/keys/{key['id']}", json={"priority": "interactive"}))["priority"]
        == "interactive"
    )
    assert _priority(world, key["id"]) == "interactive"  # the key's own wins
    ok(root.patch(f"/keys/{key['id']}", json={"priority": None}))
    assert _priority(world, key["id"]) == "batch"  # cleared: the project's again
    ok(root.patch(f"/projects/{a.project}", json={"priority": None}))
    assert _priority(world, key["id"]) == "standard"


def test_only_a_platform_admin_sets_priorities_and_only_known_ones(world: World) -> None:
    a = world.a
    admin = a.clients["tenant_admin"]
    denied = admin.patch(f"/keys/{a.key_id}", json={"priority": "interactive"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    bad = world.root.patch(f"/projects/{a.project}", json={"priority": "urgent"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert _priority(world, a.key_id) == "standard"


def test_cli_sets_priorities(world: World) -> None:
    a = world.a
    key = world.new_key(a.clients["tenant_admin"], a.default_project, name="cli-prio")
    cli(world, "projects", "priority", "default", "interactive", "--tenant", a.name)
    assert _priority(world, key["id"]) == "interactive"
    cli(world, "keys", "priority", key["id"], "batch")
    assert _priority(world, key["id"]) == "batch"
    cli(world, "keys", "priority", key["id"], "urgent", code=1)
    cli(world, "keys", "priority", key["id"], "none")
    cli(world, "projects", "priority", "default", "none", "--tenant", a.name)
    assert _priority(world, key["id"]) == "standard"
