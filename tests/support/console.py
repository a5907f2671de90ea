"""A ``lingyun serve`` for the console's and the admin API's HTTP-level tests: two tenants,
a platform admin, acme's tenant admin, member and viewer, and a key in each tenant."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer
from tests.support.tenancy import PASSWORD, _create_root, login, ok

ROOT = "root@example.com"


@dataclass
class Console:
    server: LingyunServer
    tenants: dict[str, str] = field(default_factory=dict)  # name -> id
    keys: dict[str, str] = field(default_factory=dict)  # tenant name -> key id
    projects: dict[str, str] = field(default_factory=dict)  # tenant name -> default project
    clients: list[httpx.Client] = field(default_factory=list)  # closed at teardown

    def browser(self, email: str | None = None) -> httpx.Client:
        """A cookie-keeping client that behaves like a same-origin browser."""
        c = httpx.Client(base_url=self.server.base_url, timeout=30,
                         headers={"origin": self.server.base_url})  # fmt: skip
        self.clients.append(c)
        if email is not None:
            form = form_of(c.get("/console/login"))
            resp = c.post("/console/login", data={**form, "email": email, "password": PASSWORD})
            assert resp.status_code == 303, resp.text
        return c


def form_of(resp: httpx.Response) -> dict[str, str]:
    """The hidden CSRF field of a rendered form."""
    match = re.search(r'name="csrf" value="([^"]+)"', resp.text)
    assert match, resp.text[:500]
    return {"csrf": match.group(1)}


@contextmanager
def console_world(data_dir: Path, database_url: str | None = None) -> Iterator[Console]:
    url = database_url or fresh_sqlite(data_dir)
    server = LingyunServer(data_dir=data_dir, database_url=url,
                           models=[{"name": "sim", "engine": "simulator"}])  # fmt: skip
    server.start()
    try:
        _create_root(server, ROOT)
        c = Console(server)
        with login(server.base_url, ROOT) as root:
            for name in ("acme", "globex"):
                tenant = ok(root.post("/tenants", json={"name": name}), 201)
                c.tenants[name] = tenant["id"]
                project = ok(root.get(f"/tenants/{tenant['id']}/projects"))["data"][0]
                c.projects[name] = project["id"]
                key = ok(root.post(f"/projects/{project['id']}/keys", json={"name": "k"}), 201)
                c.keys[name] = key["id"]
            for role in ("tenant_admin", "member", "viewer"):
                ok(root.post(f"/tenants/{c.tenants['acme']}/users",
                             json={"email": f"{role}@acme.example", "password": PASSWORD,
                                   "role": role}), 201)  # fmt: skip
        yield c
        for client in c.clients:
            client.close()
    finally:
        server.stop()
