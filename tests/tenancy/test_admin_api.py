"""The admin API as its users see it: log in, manage projects, keys, people, grants,
overrides; read the audit log, usage and the model list."""

from __future__ import annotations

import httpx
import openai
import pytest

from lingyun.store.access import ROLES
from tests.support.tenancy import PASSWORD, World, admitted, login, ok, poll

pytestmark = pytest.mark.postgres

MSG = [{"role": "user", "content": "count to three"}]


def test_login_failures_look_alike_and_logout_ends_the_session(world: World) -> None:
    url = f"{world.base_url}/admin/v1/auth/login"
    a = world.a
    wrong = httpx.post(url, json={"email": a.email("tenant_admin"), "password": "nope-nope"})
    nobody = httpx.post(url, json={"email": a.email("nobody"), "password": "nope-nope"})
    assert wrong.status_code == nobody.status_code == 401
    # alike but for the request id each error carries
    assert {**wrong.json()["error"], "request_id": None} == {
        **nobody.json()["error"],
        "request_id": None,
    }
    assert httpx.post(url, json={"email": "a@b.c", "password": "x", "role": "x"}).status_code == 400
    client = login(world.base_url, a.email("member"))
    assert ok(client.get("/auth/me"))["email"] == a.email("member")
    assert client.post("/auth/logout").status_code == 204
    assert client.get("/auth/me").status_code == 401
    client.close()


def test_key_secret_is_shown_once(world: World) -> None:
    admin = world.a.clients["tenant_admin"]
    created = world.new_key(admin, world.a.project, name="ci")
    secret = created["key"]
    assert created["prefix"] == secret[:12] and created["project_id"] == world.a.project
    for path in (f"/keys/{created['id']}", f"/projects/{world.a.project}/keys",
                 f"/tenants/{world.a.id}/keys"):  # fmt: skip
        resp = admin.get(path)
        assert resp.status_code == 200 and secret not in resp.text and '"key":' not in resp.text
    with world.v1(secret) as c:
        assert (
            c.post("/chat/completions", json={"model": "sim", "messages": MSG}).status_code == 200
        )

    def used() -> bool:
        return ok(admin.get(f"/keys/{created['id']}"))["last_used_at"] is not None

    poll(used, 6.0, 0.2)  # written in batches off the request path


def _refusal(client: openai.OpenAI, model: str) -> tuple[int, object]:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model=model, messages=MSG, max_tokens=4)  # type: ignore[arg-type]
    body = err.value.body
    assert isinstance(body, dict)
    # Alike but for the model's name and the request id each error carries.
    return err.value.status_code, {**body, "message": body["message"].replace(model, "M"),
                                   "request_id": None}  # fmt: skip


def test_a_key_narrowed_to_one_model_refuses_the_others_as_ungranted(world: World) -> None:
    admin = world.a.clients["tenant_admin"]
    # The default project may call sim and sim-b; this key only sim.
    created = world.new_key(admin, world.a.default_project, name="only-sim", models=["sim"])
    assert created["models"] == ["sim"]
    assert ok(admin.get(f"/keys/{created['id']}"))["models"] == ["sim"]
    empty = admin.post(f"/projects/{world.a.project}/keys", json={"models": []})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "models"
    client = openai.OpenAI(api_key=created["key"], base_url=f"{world.base_url}/v1", max_retries=0)
    assert client.chat.completions.create(model="sim", messages=MSG, max_tokens=4)  # type: ignore[arg-type]
    # sim-b is granted to the tenant but not to this key; sim-secret to neither.
    off_list, ungranted = _refusal(client, "sim-b"), _refusal(client, "sim-secret")
    assert off_list == ungranted, (off_list, ungranted)
    assert [m.id for m in client.models.list()] == ["sim"]
    client.close()


def test_member_creates_keys_in_its_project_only(world: World) -> None:
    member = world.a.clients["member"]
    made = world.new_key(member, world.a.default_project, name="mine")
    assert ok(member.post(f"/keys/{made['id']}/revoke"))["revoked_at"] is not None
    assert member.post(f"/projects/{world.a.project}/keys", json={}).status_code == 404
    keys = ok(member.get(f"/tenants/{world.a.id}/keys"))["data"]
    assert {k["project_id"] for k in keys} == {world.a.default_project}


def test_role_bindings_lifecycle(world: World) -> None:
    a = world.a
    admin = a.clients["tenant_admin"]
    user = ok(admin.post(f"/tenants/{a.id}/users", json={
        "email": a.email("newbie"), "password": PASSWORD, "role": "viewer",
        "project_id": a.project}), 201)  # fmt: skip
    # The project admin of "team" may make the newcomer a member of "team", not more.
    padmin = a.clients["project_admin"]
    binding = ok(padmin.post(f"/tenants/{a.id}/role-bindings", json={
        "user_id": user["id"], "role": "member", "project_id": a.project}), 201)  # fmt: skip
    assert binding["role"] == "member" and binding["project_id"] == a.project
    assert padmin.post(f"/tenants/{a.id}/role-bindings", json={
        "user_id": user["id"], "role": "tenant_admin"}).status_code == 403  # fmt: skip
    listed = ok(padmin.get(f"/tenants/{a.id}/role-bindings"))["data"]
    assert binding["id"] in {b["id"] for b in listed}
    assert all(b["project_id"] == a.project or b["user_id"] == a.users["project_admin"]
               for b in listed)  # fmt: skip
    newbie = login(world.base_url, a.email("newbie"))
    assert {b["role"] for b in ok(newbie.get("/auth/me"))["bindings"]} == {"viewer", "member"}
    assert padmin.delete(f"/role-bindings/{binding['id']}").status_code == 204
    assert {b["role"] for b in ok(newbie.get("/auth/me"))["bindings"]} == {"viewer"}
    assert user["id"] in {u["id"] for u in ok(admin.get(f"/tenants/{a.id}/users"))["data"]}
    newbie.close()


def test_stored_roles_are_snake_case() -> None:
    assert ROLES == ("platform_admin", "tenant_admin", "project_admin", "member", "viewer")


def test_limits_and_budgets_by_scope(world: World) -> None:
    a = world.a
    admin = a.clients["tenant_admin"]
    rule = ok(admin.patch(f"/projects/{a.project}/limits", json={"rpm": 60, "tpm": 1000}))
    assert (rule["scope"], rule["subject_id"], rule["rpm"], rule["tpm"]) == (
        "project", a.project, 60, 1000)  # fmt: skip
    rule = ok(admin.patch(f"/projects/{a.project}/limits", json={"tpm": 2000}))
    assert (rule["rpm"], rule["tpm"]) == (60, 2000)  # unset dimensions keep their value
    padmin = a.clients["project_admin"]
    ok(padmin.patch(f"/keys/{a.team_key_id}/limits", json={"model": "sim", "rpm": 5}))
    assert padmin.patch(f"/projects/{a.project}/limits", json={"rpm": 1}).status_code == 403
    assert admin.patch(f"/tenants/{a.id}/limits", json={"rpm": 10**6}).status_code == 403
    assert admin.patch(f"/projects/{a.project}/limits", json={"rpm": -1}).status_code == 400
    assert admin.patch(f"/projects/{a.project}/limits", json={"colour": 1}).status_code == 400
    rules = ok(padmin.get(f"/tenants/{a.id}/limits"))["data"]
    assert {(r["scope"], r["model"]) for r in rules} >= {("project", ""), ("key", "sim")}
    assert all(r["subject_id"] in (a.project, a.team_key_id) for r in rules)
    assert admin.delete(f"/keys/{a.team_key_id}/limits", params={"model": "sim"}).status_code == 204
    budget = ok(admin.put(f"/projects/{a.project}/budget", json={"monthly_limit": "12.50"}))
    assert budget["monthly_limit"] == "12.5"
    assert ok(padmin.get(f"/projects/{a.project}/budget"))["monthly_limit"] == "12.5"
    assert admin.put(f"/tenants/{a.id}/budget", json={"monthly_limit": "1"}).status_code == 403
    assert ok(world.root.put(f"/tenants/{a.id}/budget", json={"monthly_limit": "100"}))
    ok(admin.put(f"/projects/{a.project}/budget", json={"monthly_limit": None}))
    assert ok(admin.get(f"/projects/{a.project}/budget"))["monthly_limit"] is None
    ok(world.root.put(f"/tenants/{a.id}/budget", json={"monthly_limit": None}))
    ok(admin.delete(f"/projects/{a.project}/limits"), 204)
    actions = {e["action"] for e in ok(admin.get(f"/tenants/{a.id}/audit"))["data"]}
    assert {"limits.set", "limits.clear", "budget.set"} <= actions


def test_audit_log_records_who_what_where(world: World) -> None:
    a = world.a
    admin = a.clients["tenant_admin"]
    made = world.new_key(admin, a.default_project, name="audited")
    events = ok(admin.get(f"/tenants/{a.id}/audit", params={"limit": 1000}))["data"]
    mine = [e for e in events if e["target_id"] == made["id"]]
    assert len(mine) == 1
    (event,) = mine
    assert event["action"] == "key.create" and event["actor"] == a.email("tenant_admin")
    assert event["source"] == "127.0.0.1" and event["actor_user_id"] == a.users["tenant_admin"]
    assert event["details"]["prefix"] == made["prefix"] and made["key"] not in str(events)
    assert {e["tenant_id"] for e in events} == {a.id}
    assert a.clients["member"].get(f"/tenants/{a.id}/audit").status_code == 403
    older = ok(admin.get(f"/tenants/{a.id}/audit", params={"before": event["id"], "limit": 5}))
    assert all(e["id"] < event["id"] for e in older["data"])
    # the platform admin sees every tenant's events (other suites share this database, so
    # look each one up by position rather than expecting both on the first page)
    b_event = ok(world.b.clients["tenant_admin"].get(f"/tenants/{world.b.id}/audit"))["data"][0]
    for seen in (event, b_event):
        page = ok(world.root.get("/audit", params={"before": seen["id"] + 1, "limit": 1}))["data"]
        assert [e["id"] for e in page] == [seen["id"]] and page[0]["tenant_id"] == seen["tenant_id"]


def test_model_list_by_role(world: World) -> None:
    everything = ok(world.root.get("/models"))["data"]
    assert {m["id"] for m in everything} >= {"sim", "sim-b", "sim-secret"}
    assert {m["engine"] for m in everything} >= {"simulator", "openai-compatible"}
    acme = ok(world.a.clients["viewer"].get("/models"))["data"]
    assert {m["id"] for m in acme} == {"sim", "sim-b"}
    globex = ok(world.b.clients["tenant_admin"].get("/models"))["data"]
    assert {m["id"] for m in globex} == {"sim-b"}


def test_usage_by_day_model_project(world: World) -> None:
    a = world.a
    with world.v1(a.key) as c:
        assert c.post("/chat/completions", json={"model": "sim", "messages": MSG,
                                                 "max_tokens": 3}).status_code == 200  # fmt: skip
    with world.v1(a.team_key) as c:
        assert admitted(c.post("/chat/completions", json={"model": "sim", "messages": MSG}))

    def both_projects() -> bool:
        with world.v1(a.key) as c:
            rows = ok(c.get("/usage"))["data"]
        return {(r["model"], r["project_id"]) for r in rows} >= {
            ("sim", a.default_project), ("sim", a.project)}  # fmt: skip

    poll(both_projects, 10.0, 0.1)
    with world.v1(a.team_key) as c:
        report = ok(c.get("/usage"))
        rows = [r for r in report["data"] if r["model"] == "sim"]
        assert all(r["total_tokens"] == r["prompt_tokens"] + r["completion_tokens"] for r in rows)
        assert {r["project_name"] for r in rows} >= {"default", "team"}
        assert len({(r["date"], r["model"], r["project_id"]) for r in rows}) == len(rows)
        future = ok(c.get("/usage", params={"start": "2999-01-01", "end": "2999-01-31"}))
        assert future["data"] == []
        assert (
            c.get("/usage", params={"start": "2026-02-01", "end": "2026-01-01"}).status_code == 400
        )
        assert c.get("/usage", params={"start": "yesterday"}).status_code == 400
    team_admin = ok(a.clients["project_admin"].get(f"/tenants/{a.id}/usage"))
    assert {r["project_id"] for r in team_admin["data"]} == {a.project}
    assert httpx.get(f"{world.base_url}/v1/usage").status_code == 401


def test_prompt_logging_is_a_project_admins_switch(world: World) -> None:
    a = world.a
    path = f"/projects/{a.project}/prompt-logging"
    admin = a.clients["project_admin"]  # of "team"
    assert ok(admin.get(f"/projects/{a.project}"))["prompt_log_retention_seconds"] is None
    missing = admin.put(path, json={"enabled": True})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "retention_seconds"
    assert admin.put(path, json={"enabled": True, "retention_seconds": 0}).status_code == 400
    member = a.clients["member"]  # of "default": may see it, may not switch it
    denied = member.put(f"/projects/{a.default_project}/prompt-logging",
                        json={"enabled": True, "retention_seconds": 60})  # fmt: skip
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_denied"
    assert member.put(path, json={"enabled": False}).status_code == 404  # not its project
    on = ok(admin.put(path, json={"enabled": True, "retention_seconds": 3600}))
    assert on["prompt_log_retention_seconds"] == 3600
    off = ok(admin.put(path, json={"enabled": False}))
    assert off["prompt_log_retention_seconds"] is None
    events = ok(a.clients["tenant_admin"].get(f"/tenants/{a.id}/audit", params={"limit": 50}))
    mine = [e for e in events["data"] if e["action"] == "project.prompt_logging"]
    assert [e["details"] for e in mine[:2]] == [
        {"retention_seconds": None},
        {"retention_seconds": 3600},
    ]
