"""A ``lingyun serve`` with two tenants fully populated (admins, members, viewers, keys,
grants), built through the admin API, for the tenancy and security suites.

Only the platform admin is made with the CLI (the bootstrap path); everything else goes
through ``/admin/v1`` so the suites exercise the API as a customer would.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import LingyunServer

PASSWORD = "correct horse battery"
# Two real replicas ("sim", and "sim-b", whose served requests show in tenant B's usage,
# which is billed usage); "sim-secret" is an upstream at a closed port (no process to
# start): a request the gateway lets through to it fails with a 5xx, never a 404.
_NOWHERE = "http://127.0.0.1:9/v1"
MODELS = [
    {"name": "sim", "engine": "simulator"},
    {"name": "sim-b", "engine": "simulator"},
    {"name": "sim-secret", "engine": "openai-compatible", "base_url": _NOWHERE, "model": "x"},
]


def admitted(resp: httpx.Response) -> bool:
    """Authenticated and resolved: served (sim) or routed to a dead upstream (the others)."""
    return resp.status_code == 200 or resp.status_code >= 500


def login(base_url: str, email: str, password: str = PASSWORD) -> httpx.Client:
    resp = httpx.post(
        f"{base_url}/admin/v1/auth/login", json={"email": email, "password": password}
    )
    assert resp.status_code == 200, resp.text
    return httpx.Client(
        base_url=f"{base_url}/admin/v1",
        headers={"authorization": f"Bearer {resp.json()['token']}"},
        timeout=30,
    )


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.request.method} {resp.request.url}: {resp.text}"
    return resp.json() if resp.content else None


def poll(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> float:
    """Seconds until ``check()`` held; fails after ``timeout_s``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


@dataclass
class Org:
    """One tenant and its people and keys (ids, secrets and logged-in admin clients)."""

    name: str
    id: str = ""
    default_project: str = ""
    project: str = ""  # a second project, "team"
    key: str = ""  # a key in the default project
    key_id: str = ""
    team_key: str = ""  # a key in "team"
    team_key_id: str = ""
    users: dict[str, str] = field(default_factory=dict)  # role -> user id
    clients: dict[str, httpx.Client] = field(default_factory=dict)  # role -> admin client

    def email(self, who: str) -> str:
        return f"{who}@{self.name}.test"


@dataclass
class World:
    server: LingyunServer
    root: httpx.Client
    a: Org
    b: Org
    suffix: str  # makes this world's names unique in a database other suites share
    users: int = 0  # holders (suites) of this world; see shared_world()

    @property
    def root_email(self) -> str:
        return f"root-{self.suffix}@lingyun.test"

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def v1(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/v1", headers={"authorization": f"Bearer {key}"}, timeout=30
        )

    def new_key(self, client: httpx.Client, project_id: str, **body: Any) -> dict[str, Any]:
        created: dict[str, Any] = ok(client.post(f"/projects/{project_id}/keys", json=body), 201)
        return created

    def close(self) -> None:
        for org in (self.a, self.b):
            for c in org.clients.values():
                c.close()
        self.root.close()


def _populate(world_root: httpx.Client, base_url: str, org: Org) -> None:
    tenant = ok(world_root.post("/tenants", json={"name": org.name}), 201)
    org.id = tenant["id"]
    projects = ok(world_root.get(f"/tenants/{org.id}/projects"))["data"]
    org.default_project = projects[0]["id"]
    team = ok(world_root.post(f"/tenants/{org.id}/projects", json={"name": "team"}), 201)
    org.project = team["id"]
    people = {
        "tenant_admin": None,
        "project_admin": org.project,
        "member": org.default_project,
        "viewer": org.default_project,
    }
    for role, project_id in people.items():
        body: dict[str, Any] = {"email": org.email(role), "password": PASSWORD, "role": role}
        if project_id is not None:
            body["project_id"] = project_id
        user = ok(world_root.post(f"/tenants/{org.id}/users", json=body), 201)
        org.users[role] = user["id"]
        org.clients[role] = login(base_url, org.email(role))
    admin = org.clients["tenant_admin"]
    key = ok(admin.post(f"/projects/{org.default_project}/keys", json={"name": "main"}), 201)
    org.key, org.key_id = key["key"], key["id"]
    team_key = ok(admin.post(f"/projects/{org.project}/keys", json={"name": "team"}), 201)
    org.team_key, org.team_key_id = team_key["key"], team_key["id"]


def start_world(database_url: str, data_dir: Path) -> World:
    # The fuzzing and isolation suites hammer the admin API from one address by design; the
    # per-address limit itself is tried in tests/security/test_bounds.py.
    server = LingyunServer(
        data_dir=data_dir,
        database_url=database_url,
        models=MODELS,
        extra_config={"control_burst": 1_000_000},
    )
    # Bootstrap: the CLI creates the first platform admin before the server starts.
    data_dir.mkdir(parents=True, exist_ok=True)
    suffix = secrets.token_hex(3)
    root_email = f"root-{suffix}@lingyun.test"
    _create_root(server, root_email)
    server.start(timeout_s=120)
    root = login(server.base_url, root_email)
    a, b = Org(f"acme-{suffix}"), Org(f"globex-{suffix}")
    for org in (a, b):
        _populate(root, server.base_url, org)
    # Tenant A may use "sim" and "sim-b"; inside A, project "team" only "sim".
    # Tenant B may use "sim-b" only. Nobody is granted "sim-secret".
    for model in ("sim", "sim-b"):
        ok(root.post(f"/tenants/{a.id}/model-grants", json={"model": model}), 201)
    ok(root.post(f"/tenants/{b.id}/model-grants", json={"model": "sim-b"}), 201)
    admin_a = a.clients["tenant_admin"]
    ok(admin_a.post(f"/tenants/{a.id}/model-grants", json={"model": "sim", "project_id": a.project}),
       201)  # fmt: skip
    return World(server, root, a, b, suffix)


def _create_root(server: LingyunServer, email: str) -> None:
    """``lingyun admin create-user EMAIL --password-stdin --platform-admin``, in-process
    (a subprocess costs seconds of imports; tests/security runs the CLI as a process too)."""
    from typer.testing import CliRunner

    from lingyun.cli.main import app

    result = CliRunner().invoke(
        app,
        ["admin", "create-user", email, "--password-stdin", "--platform-admin",
         "--data-dir", str(server.data_dir), "--database-url", server.database_url],
        input=PASSWORD + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


_WORLDS: dict[str, World] = {}


@contextmanager
def shared_world(database_url: str, data_dir: Path) -> Iterator[World]:
    """One world per database for every suite that asks (tenancy and security), stopped
    when the last of them is done with it."""
    world = _WORLDS.get(database_url)
    if world is None:
        world = _WORLDS[database_url] = start_world(database_url, data_dir)
    world.users += 1
    try:
        yield world
    finally:
        world.users -= 1
        if world.users == 0:
            del _WORLDS[database_url]
            world.close()
            world.server.stop()
