"""The acceptance interface on the command line, against a running server's database.

The verbs run in-process (Typer's runner) to keep the suite fast; the security suite runs
``lingyun keys revoke`` as a real subprocess.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from lingyun.cli.main import app
from tests.support.tenancy import World, login, poll

pytestmark = pytest.mark.postgres


def cli(world: World, *args: str, input: str | None = None, code: int = 0) -> str:
    common = ["--data-dir", str(world.server.data_dir), "--database-url",
              world.server.database_url]  # fmt: skip
    result = CliRunner().invoke(app, [*args, *common], input=input)
    assert result.exit_code == code, f"lingyun {' '.join(args)}: {result.output}"
    return result.output


def cli_json(world: World, *args: str) -> Any:
    return json.loads(cli(world, *args, "--json"))


def _models(world: World, key: str) -> set[str]:
    with world.v1(key) as c:
        return {m["id"] for m in c.get("/models").json()["data"]}


def test_project_keys_create_list_revoke(world: World) -> None:
    cli(world, "projects", "create", "research", "--tenant", world.a.name)
    created = cli_json(world, "keys", "create", "--tenant", world.a.name, "--project", "research")
    assert created["key"].startswith("sk-ly-") and created["id"].startswith("key_")
    with world.v1(created["key"]) as c:
        assert c.get("/models").status_code == 200
    listed_text = cli(world, "keys", "list", "--tenant", world.a.name, "--json")
    assert created["key"] not in listed_text
    listed = json.loads(listed_text)
    assert created["id"] in {k["id"] for k in listed}
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    assert created["key"][12:] not in listed_text  # not even a fragment past the prefix
    cli(world, "keys", "revoke", created["id"])

    def refused() -> bool:
        with world.v1(created["key"]) as c:
            return c.get("/models").status_code == 401

    assert poll(refused, 2.0) <= 1.2
    cli(world, "keys", "revoke", created["id"], code=1)  # already revoked


def test_model_grants_narrow_and_widen_within_a_second(world: World) -> None:
    tenant = f"initech-{world.suffix}"
    cli(world, "tenants", "create", tenant)
    key = cli_json(world, "keys", "create", "--tenant", tenant, "--project", "default")["key"]
    everything = {"sim", "sim-b", "sim-secret"}
    assert _models(world, key) == everything  # no grants yet: every model
    steps: list[tuple[list[str], set[str]]] = [
        (["grant", "sim", "--tenant", tenant], {"sim"}),
        (["grant", "*", "--tenant", tenant], everything),
        (["grant", "sim-b", "--tenant", tenant, "--project", "default"], {"sim-b"}),
        (["revoke", "*", "--tenant", tenant], set()),  # tenant {sim} & project {sim-b}
        (["revoke", "sim-b", "--tenant", tenant, "--project", "default"], {"sim"}),
        (["revoke", "sim", "--tenant", tenant], everything),
    ]
    for args, expected in steps:
        cli(world, "models", *args)
        took = poll(lambda e=expected: _models(world, key) == e, 3.0)  # type: ignore[misc]
        assert took <= 1.5, f"models {args} took {took:.2f}s"
    cli(world, "models", "revoke", "sim", "--tenant", tenant, code=1)  # no such grant
    cli(world, "models", "grant", "sim", "--tenant", "no-such-tenant", code=1)


def test_admin_create_user_then_log_in(world: World) -> None:
    ops = world.a.email("ops")
    out = cli(world, "admin", "create-user", ops, "--password-stdin",
              "--tenant", world.a.name, "--role", "viewer", input="s3cret-pass\n")  # fmt: skip
    assert ops in out
    client = login(world.base_url, ops, "s3cret-pass")
    with client:
        me = client.get("/auth/me").json()
    assert me["bindings"] == [{"id": None, "user_id": None, "role": "viewer",
                               "tenant_id": world.a.id, "project_id": None}]  # fmt: skip
    cli(world, "admin", "create-user", world.a.email("x"), code=1)  # password must come on stdin
    cli(world, "admin", "create-user", world.a.email("y"), "--password-stdin", "--tenant", world.a.name,
        "--role", "emperor", input="long-enough\n", code=1)  # fmt: skip
    cli(
        world,
        "admin",
        "create-user",
        ops,
        "--password-stdin",
        input="s3cret-pass\n",
        code=1,
    )  # fmt: skip  (exists)
    bad = httpx.post(f"{world.base_url}/admin/v1/auth/login",
                     json={"email": ops, "password": "wrong-pass"})  # fmt: skip
    assert bad.status_code == 401


def test_audit_shows_cli_and_api_changes(world: World) -> None:
    cli(world, "projects", "create", "audited", "--tenant", world.a.name)
    events = cli_json(world, "audit", "--tenant", world.a.name, "--limit", "500")
    actions = {(e["action"], e["source"]) for e in events}
    assert ("project.create", "cli") in actions
    assert ("key.create", "127.0.0.1") in actions  # keys made through the admin API
    assert all(e["tenant_id"] == world.a.id for e in events)
    text = cli(world, "audit", "--tenant", world.a.name)
    assert "cli@cli  project.create" in text
