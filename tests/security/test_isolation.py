"""Attacks on tenant isolation: every one must fail.

Tenant A ("acme-…") and tenant B ("globex-…") each have a tenant admin, a project admin (of
project "team"), a member and a viewer (of "default"), and keys in both projects. A may use
models "sim" and "sim-b" (its project "team" only "sim"); B only "sim-b"; "sim-secret" is
granted to nobody.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.tenancy import World, admitted, ok, poll

pytestmark = pytest.mark.postgres

MSG = [{"role": "user", "content": "hello there"}]


def _chat(w: World, key: str, model: str) -> httpx.Response:
    with w.v1(key) as c:
        return c.post("/chat/completions", json={"model": model, "messages": MSG, "max_tokens": 2})


def _without(body: dict[str, object], *names: str) -> str:
    """The body with these names masked, and without its request id (unique per request)."""
    error = body.get("error")
    if isinstance(error, dict):
        body = {**body, "error": {k: v for k, v in error.items() if k != "request_id"}}
    text = str(body)
    for n in names:
        text = text.replace(n, "NAME")
    return text


# -- keys (data plane) ----------------------------------------------------------------------
def test_model_not_granted_is_indistinguishable_from_unknown(world: World) -> None:
    unknown = f"no-such-model-{secrets.token_hex(3)}"
    for key, hidden in [(world.a.key, "sim-secret"), (world.b.key, "sim"),
                        (world.a.team_key, "sim-b")]:  # fmt: skip
        with world.v1(key) as c:
            for path, body in [
                ("/chat/completions", {"messages": MSG}),
                ("/completions", {"prompt": "hi"}),
                ("/embeddings", {"input": "hi"}),
            ]:
                denied = c.post(path, json={"model": hidden, **body})
                missing = c.post(path, json={"model": unknown, **body})
                assert denied.status_code == missing.status_code == 404
                assert denied.json()["error"]["code"] == "model_not_found"
                assert _without(denied.json(), hidden) == _without(missing.json(), unknown)
            got, none = c.get(f"/models/{hidden}"), c.get(f"/models/{unknown}")
            assert got.status_code == none.status_code == 404
            assert _without(got.json(), hidden) == _without(none.json(), unknown)
            listed = {m["id"] for m in ok(c.get("/models"))["data"]}
            assert hidden not in listed


def test_granted_models_work_and_listing_shows_only_them(world: World) -> None:
    assert _chat(world, world.a.key, "sim").status_code == 200
    assert admitted(_chat(world, world.a.key, "sim-b"))
    assert _chat(world, world.a.team_key, "sim").status_code == 200
    assert admitted(_chat(world, world.b.key, "sim-b"))
    with world.v1(world.a.team_key) as c:
        assert {m["id"] for m in ok(c.get("/models"))["data"]} == {"sim"}
    with world.v1(world.b.key) as c:
        assert {m["id"] for m in ok(c.get("/models"))["data"]} == {"sim-b"}


def test_usage_shows_only_the_keys_tenant(world: World) -> None:
    assert _chat(world, world.a.key, "sim").status_code == 200
    assert admitted(_chat(world, world.b.key, "sim-b"))
    b_projects = {world.b.default_project, world.b.project}

    def b_has_usage() -> bool:
        with world.v1(world.b.key) as c:
            return any(r["model"] == "sim-b" for r in ok(c.get("/usage"))["data"])

    poll(b_has_usage, timeout_s=10)
    with world.v1(world.b.key) as c:
        # Smuggled parameters are ignored: the tenant comes from the key alone.
        report = ok(c.get("/usage", params={"tenant_id": world.a.id, "tenant": world.a.name}))
    assert report["tenant_id"] == world.b.id
    assert report["data"] and {r["project_id"] for r in report["data"]} <= b_projects
    assert world.a.id not in str(report) and world.a.default_project not in str(report)


def test_admin_token_and_api_key_are_not_interchangeable(world: World) -> None:
    admin_token = world.a.clients["tenant_admin"].headers["authorization"]
    with httpx.Client(base_url=world.base_url) as c:
        resp = c.get("/v1/models", headers={"authorization": admin_token})
        assert resp.status_code == 401
        resp = c.get("/admin/v1/tenants", headers={"authorization": f"Bearer {world.a.key}"})
        assert resp.status_code == 401
        assert c.get("/admin/v1/tenants").status_code == 401
        assert c.get("/admin/v1/auth/me", headers={"authorization": "Basic abc"}).status_code == 401


def test_revoked_key_gets_401_within_a_second(world: World) -> None:
    admin = world.a.clients["tenant_admin"]
    for revoke_via in ("api", "cli"):
        key = world.new_key(admin, world.a.default_project, name=f"doomed-{revoke_via}")
        assert _chat(world, key["key"], "sim").status_code == 200  # cached as valid now
        if revoke_via == "api":
            ok(admin.post(f"/keys/{key['id']}/revoke"))
        else:
            world.server.cli("keys", "revoke", key["id"])
        took = poll(lambda k=key["key"]: _chat(world, k, "sim").status_code == 401, 2.0)
        assert took <= 1.2, f"revocation via {revoke_via} took {took:.2f}s"
        body = _chat(world, key["key"], "sim").json()
        assert body["error"]["code"] == "invalid_api_key"


def test_expired_key_gets_401_within_a_second(world: World) -> None:
    admin = world.a.clients["tenant_admin"]
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    key = world.new_key(admin, world.a.default_project, expires_at=expires.isoformat())
    assert _chat(world, key["key"], "sim").status_code == 200
    poll(lambda: _chat(world, key["key"], "sim").status_code == 401, 4.0)
    late = (datetime.now(UTC) - expires).total_seconds()
    assert late <= 1.0, f"expired key accepted {late:.2f}s after expiry"


# -- admin API: another tenant's objects -----------------------------------------------------
def _foreign_paths(w: World) -> list[tuple[str, str, dict[str, object] | None]]:
    b = w.b
    return [
        ("GET", f"/tenants/{b.id}", None),
        ("PATCH", f"/tenants/{b.id}", {"weight": 5}),
        ("GET", f"/tenants/{b.id}/projects", None),
        ("POST", f"/tenants/{b.id}/projects", {"name": "pwned"}),
        ("GET", f"/tenants/{b.id}/keys", None),
        ("GET", f"/tenants/{b.id}/users", None),
        ("POST", f"/tenants/{b.id}/users",
         {"email": "x@evil.test", "password": "p" * 12, "role": "viewer"}),
        ("GET", f"/tenants/{b.id}/role-bindings", None),
        ("POST", f"/tenants/{b.id}/role-bindings",
         {"user_id": b.users["viewer"], "role": "tenant_admin"}),
        ("GET", f"/tenants/{b.id}/model-grants", None),
        ("POST", f"/tenants/{b.id}/model-grants", {"model": "sim-secret"}),
        ("GET", f"/tenants/{b.id}/audit", None),
        ("GET", f"/tenants/{b.id}/usage", None),
        ("GET", f"/projects/{b.default_project}", None),
        ("GET", f"/projects/{b.project}/keys", None),
        ("POST", f"/projects/{b.project}/keys", {"name": "mine-now"}),
        ("GET", f"/tenants/{b.id}/limits", None),
        ("PATCH", f"/projects/{b.project}/limits", {"rpm": 1}),
        ("DELETE", f"/projects/{b.project}/limits", None),
        ("GET", f"/projects/{b.project}/budget", None),
        ("PUT", f"/projects/{b.project}/budget", {"monthly_limit": "0"}),
        ("GET", f"/tenants/{b.id}/budget", None),
        ("PUT", f"/projects/{b.project}/prompt-logging",
         {"enabled": True, "retention_seconds": 60}),
        ("GET", f"/keys/{b.key_id}", None),
        ("POST", f"/keys/{b.key_id}/revoke", None),
        ("PATCH", f"/keys/{b.key_id}/limits", {"rpm": 1}),
        ("DELETE", f"/keys/{b.key_id}/limits", None),
        ("GET", f"/users/{b.users['tenant_admin']}", None),
    ]  # fmt: skip


@pytest.mark.parametrize("role", ["tenant_admin", "project_admin", "member", "viewer"])
def test_nothing_of_another_tenant_is_reachable(world: World, role: str) -> None:
    client = world.a.clients[role]
    b = world.b
    for method, path, body in _foreign_paths(world):
        resp = client.request(method, path, json=body)
        assert resp.status_code == 404, f"{role} {method} {path}: {resp.status_code} {resp.text}"
        # The same answer as for an id that was never issued.
        for real in (b.id, b.default_project, b.project, b.key_id, *b.users.values()):
            if real in path:
                fake = real.split("_")[0] + "_" + secrets.token_hex(8)
                again = client.request(method, path.replace(real, fake), json=body)
                assert again.status_code == 404
                assert _without(again.json(), fake) == _without(resp.json(), real)
    listed = {t["id"] for t in ok(client.get("/tenants"))["data"]}
    assert listed == {world.a.id}
    # B's keys still work: nothing above revoked them.
    assert admitted(_chat(world, b.key, "sim-b"))


@pytest.mark.parametrize(
    "path",
    ["/tenants/{}", "/projects/{}", "/keys/{}", "/keys/{}/revoke", "/users/{}",
     "/model-grants/{}", "/role-bindings/{}"],
)  # fmt: skip
def test_guessed_ids_answer_404(world: World, path: str) -> None:
    client = world.a.clients["tenant_admin"]
    for guess in ("ten_0000000000000001", "prj_1", "key_deadbeefdeadbeef", "usr_1", "1", "admin"):
        url = path.format(guess)
        method = "POST" if url.endswith("/revoke") else "GET"
        if url.startswith(("/model-grants", "/role-bindings")):
            method = "DELETE"
        resp = client.request(method, url)
        assert resp.status_code == 404, f"{method} {url}: {resp.text}"


# -- mass assignment, escalation, platform routes ----------------------------------------------
def test_tenant_ids_smuggled_in_bodies_are_refused(world: World) -> None:
    a, b = world.a, world.b
    admin = a.clients["tenant_admin"]
    attempts = [
        (f"/tenants/{a.id}/projects", {"name": "x1", "tenant_id": b.id}),
        (f"/projects/{a.default_project}/keys", {"name": "x2", "tenant_id": b.id}),
        (f"/projects/{a.default_project}/keys", {"name": "x3", "project_id": b.project}),
        (f"/tenants/{a.id}/users",
         {"email": "x4@acme.test", "password": "p" * 12, "role": "viewer", "tenant_id": b.id}),
        (f"/tenants/{a.id}/role-bindings",
         {"user_id": a.users["viewer"], "role": "member", "tenant_id": b.id}),
        (f"/tenants/{a.id}/model-grants",
         {"model": "sim-secret", "project_id": a.project, "tenant_id": b.id}),
    ]  # fmt: skip
    for path, body in attempts:
        resp = admin.post(path, json=body)
        assert resp.status_code == 400, f"{path} {body}: {resp.text}"
        assert resp.json()["error"]["type"] == "invalid_request_error"
    # Another tenant's project id inside an otherwise valid body is not found.
    for path, body in [
        (f"/tenants/{a.id}/model-grants", {"model": "sim", "project_id": b.project}),
        (f"/tenants/{a.id}/role-bindings",
         {"user_id": a.users["viewer"], "role": "viewer", "project_id": b.project}),
        (f"/tenants/{a.id}/users",
         {"email": "x5@acme.test", "password": "p" * 12, "role": "viewer",
          "project_id": b.project}),
    ]:  # fmt: skip
        assert admin.post(path, json=body).status_code == 404
    # Pulling B's user into A by id is refused as if the user did not exist.
    resp = admin.post(f"/tenants/{a.id}/role-bindings",
                      json={"user_id": b.users["tenant_admin"], "role": "viewer"})  # fmt: skip
    assert resp.status_code == 404
    # A's keys list is unchanged: nothing above created anything in B.
    b_keys = ok(world.root.get(f"/tenants/{b.id}/keys"))["data"]
    assert {k["id"] for k in b_keys} >= {b.key_id, b.team_key_id}
    assert all(k["name"] not in ("x2", "x3", "mine-now") for k in b_keys)


@pytest.mark.parametrize("role", ["member", "viewer", "project_admin"])
def test_no_one_promotes_themselves(world: World, role: str) -> None:
    a = world.a
    client = a.clients[role]
    me = a.users[role]
    before = ok(client.get("/auth/me"))["bindings"]
    for body in [
        {"user_id": me, "role": "tenant_admin"},
        {"user_id": me, "role": "project_admin", "project_id": a.default_project},
        {"user_id": me, "role": "member"},  # tenant-wide
    ]:
        resp = client.post(f"/tenants/{a.id}/role-bindings", json=body)
        # 404 where the target project is invisible to the caller (a project admin of "team").
        assert resp.status_code in (403, 404), f"{role} {body}: {resp.text}"
    resp = client.post(f"/tenants/{a.id}/users",
                       json={"email": f"sock-{role}@acme.test", "password": "p" * 12,
                             "role": "tenant_admin"})  # fmt: skip
    assert resp.status_code == 403
    resp = client.post(f"/tenants/{a.id}/model-grants", json={"model": "sim-secret"})
    assert resp.status_code == 403
    me_now = ok(client.get("/auth/me"))
    assert me_now["bindings"] == before and not me_now["platform_admin"]


def test_viewer_cannot_create_or_revoke_keys(world: World) -> None:
    viewer = world.a.clients["viewer"]
    assert viewer.post(f"/projects/{world.a.default_project}/keys", json={}).status_code == 403
    assert viewer.post(f"/keys/{world.a.key_id}/revoke").status_code == 403
    assert _chat(world, world.a.key, "sim").status_code == 200


def test_tenant_admin_cannot_reach_platform_routes(world: World) -> None:
    a = world.a
    admin = a.clients["tenant_admin"]
    attempts = [
        ("POST", "/tenants", {"name": "shadow"}),
        ("GET", "/users", None),
        ("POST", "/users", {"email": "god@acme.test", "password": "p" * 12,
                            "platform_admin": True}),
        ("GET", "/audit", None),
        ("PATCH", f"/tenants/{a.id}", {"weight": 100}),  # the fair share is the platform's
        ("PATCH", f"/tenants/{a.id}/limits", {"rpm": 10**6}),
        ("PUT", f"/tenants/{a.id}/budget", {"monthly_limit": None}),
        ("POST", f"/tenants/{a.id}/model-grants", {"model": "sim-secret"}),
    ]  # fmt: skip
    for method, path, body in attempts:
        resp = admin.request(method, path, json=body)
        assert resp.status_code == 403, f"{method} {path}: {resp.text}"
        assert resp.json()["error"]["code"] == "permission_denied"
    resp = admin.post(f"/tenants/{a.id}/users", json={"email": "g2@acme.test",
                      "password": "p" * 12, "role": "platform_admin"})  # fmt: skip
    assert resp.status_code == 400
    assert _chat(world, a.key, "sim-secret").status_code == 404


def test_unstorable_model_name_is_refused_and_usage_keeps_flowing(world: World) -> None:
    """A NUL in ``model`` once poisoned the usage writer's batch on PostgreSQL."""
    with world.v1(world.b.team_key) as c:
        resp = c.post("/chat/completions", json={"model": "sim\u0000x", "messages": MSG})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"
        assert c.post("/embeddings", json={"model": "\u0000", "input": "x"}).status_code == 400
        assert admitted(c.post("/chat/completions", json={"model": "sim-b", "messages": MSG}))

        def recorded() -> bool:
            rows = ok(c.get("/usage"))["data"]
            return any(r["project_id"] == world.b.project for r in rows)

        poll(recorded, 10.0, 0.1)
