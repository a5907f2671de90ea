"""Trying to break the console: other tenants' objects, admin actions by members, forged
cross-site posts, headers, secrets on pages."""

from __future__ import annotations

import httpx

from tests.support.console import Console, form_of


def test_pages_send_a_content_security_policy(console: Console) -> None:
    for client, path in ((console.browser(), "/console/login"),
                         (console.browser("tenant_admin@acme.example"), "/console/keys")):  # fmt: skip
        resp = client.get(path)
        assert resp.status_code == 200
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert resp.headers["x-content-type-options"] == "nosniff"


def test_session_cookie_is_httponly_and_samesite(console: Console) -> None:
    c = console.browser()
    form = form_of(c.get("/console/login"))
    resp = c.post("/console/login", data={**form, "email": "member@acme.example",
                                          "password": "correct horse battery"})  # fmt: skip
    cookie = resp.headers["set-cookie"].lower()
    assert "ly_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "path=/console" in cookie


def test_tenant_admin_cannot_see_or_change_another_tenant(console: Console) -> None:
    c = console.browser("tenant_admin@acme.example")
    globex, acme = console.tenants["globex"], console.tenants["acme"]
    for path in ("/console", "/console/keys", "/console/usage", "/console/models",
                 "/console/usage/invoice.json"):  # fmt: skip
        resp = c.get(path, params={"tenant": globex})
        assert resp.status_code == 404, (path, resp.status_code)
        assert "globex" not in resp.text
    assert c.get("/console/keys", params={"tenant": "ten_guessed000000"}).status_code == 404
    # Revoking globex's key through acme's page: 404, and the key stays active.
    form = form_of(c.get("/console/keys", params={"tenant": acme}))
    resp = c.post(f"/console/keys/{console.keys['globex']}/revoke",
                  data={**form, "tenant": acme})  # fmt: skip
    assert resp.status_code == 404
    key = console.server.cli_json("keys", "list", "--tenant", "globex")
    assert all(k["revoked_at"] is None for k in key), key


def test_member_cannot_do_operator_actions(console: Console) -> None:
    c = console.browser("member@acme.example")
    acme = console.tenants["acme"]
    for path in ("/console/ops/tenants", "/console/ops/deployments", "/console/ops/users",
                 "/console/ops/audit", "/console/ops/clouds", "/console/ops/prices",
                 "/console/ops/mix", f"/console/ops/tenants/{acme}"):  # fmt: skip
        assert c.get(path).status_code == 403, path
    form = form_of(c.get("/console/keys"))
    for path, data in ((f"/console/ops/tenants/{acme}/budget", {"monthly": "1"}),
                       (f"/console/ops/tenants/{acme}/settings", {"weight": "9"}),
                       (f"/console/ops/tenants/{acme}/grants", {"model": "sim"}),
                       ("/console/ops/prices", {"model": "sim", "input": "0", "output": "0"}),
                       ("/console/ops/deployments/sim/scale", {"replicas": "0"})):  # fmt: skip
        assert c.post(path, data={**form, **data}).status_code == 403, path
    resp = c.post("/console/ops/tenants", data={**form, "name": "sneaky"})
    assert resp.status_code == 403
    assert "sneaky" not in console.server.cli("tenants", "list").stdout
    resp = c.post("/console/ops/deployments", data={**form, "name": "x", "engine": "simulator"})
    assert resp.status_code == 403


def test_viewer_cannot_create_or_revoke_keys(console: Console) -> None:
    c = console.browser("viewer@acme.example")
    page = c.get("/console/keys")
    assert page.status_code == 200 and "Create key" not in page.text
    project = console.projects["acme"]
    resp = c.post("/console/keys", data={**form_of(page), "name": "v", "project": project})
    assert resp.status_code == 403
    resp = c.post(f"/console/keys/{console.keys['acme']}/revoke", data=form_of(page))
    assert resp.status_code == 403


def test_forged_cross_site_posts_fail(console: Console) -> None:
    c = console.browser("tenant_admin@acme.example")
    project = console.projects["acme"]
    form = form_of(c.get("/console/keys"))
    before = len(console.server.cli_json("keys", "list", "--tenant", "acme"))
    evil = {"origin": "http://evil.example"}
    # Another site's page can send the cookies but neither read nor guess the CSRF token.
    assert c.post("/console/keys", data={"name": "f", "project": project}).status_code == 403
    assert c.post("/console/keys", data={"csrf": "guess", "name": "f",
                                         "project": project}).status_code == 403  # fmt: skip
    resp = c.post("/console/keys", data={**form, "name": "f", "project": project}, headers=evil)
    assert resp.status_code == 403
    resp = c.post("/console/logout", data={}, headers=evil)
    assert resp.status_code == 403
    assert len(console.server.cli_json("keys", "list", "--tenant", "acme")) == before
    # The same form from the console itself works.
    resp = c.post("/console/keys", data={**form, "name": "f", "project": project})
    assert resp.status_code == 200 and 'id="secret-key"' in resp.text


def test_secret_is_shown_once_and_never_listed(console: Console) -> None:
    c = console.browser("member@acme.example")
    page = c.get("/console/keys")
    project = console.projects["acme"]
    created = c.post("/console/keys", data={**form_of(page), "name": "once", "project": project})
    secret = created.text.split('id="secret-key" type="text" readonly value="')[1].split('"')[0]
    assert secret.startswith("sk-")
    assert secret not in c.get("/console/keys").text
    assert secret not in c.get("/console/ops/audit").text


def test_signed_out_session_no_longer_works(console: Console) -> None:
    c = console.browser("member@acme.example")
    token = c.cookies["ly_session"]
    c.post("/console/logout", data=form_of(c.get("/console/keys")))
    with httpx.Client(base_url=console.server.base_url, cookies={"ly_session": token}) as replay:
        resp = replay.get("/console/keys")
    assert resp.status_code == 303 and "/console/login" in resp.headers["location"]


def test_members_cannot_create_projects_or_hand_out_roles(console: Console) -> None:
    c = console.browser("member@acme.example")
    form = form_of(c.get("/console/projects"))
    assert c.post("/console/projects", data={**form, "name": "mine"}).status_code == 403
    resp = c.post(
        "/console/members",
        data={**form, "email": "x@acme.example", "password": "long enough pw", "role": "viewer"},
    )
    assert resp.status_code == 403


def test_tenant_admin_cannot_add_members_to_another_tenant(console: Console) -> None:
    c = console.browser("tenant_admin@acme.example")
    form = form_of(c.get("/console/projects"))
    body = {**form, "email": "spy@acme.example", "password": "long enough pw", "role": "member"}
    globex = console.tenants["globex"]
    assert c.post("/console/members", data={**body, "tenant": globex}).status_code == 404
    acme = console.tenants["acme"]
    resp = c.post(
        "/console/members", data={**body, "tenant": acme, "project": console.projects["globex"]}
    )
    assert resp.status_code == 404
    assert c.post("/console/members", data={**body, "role": "platform_admin"}).status_code == 403
