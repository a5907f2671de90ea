"""Property-based requests from the OpenAPI schema of ``/v1`` and ``/admin/v1``: whatever
schemathesis sends, the server answers without a 5xx.

Admin routes run as a platform admin (the widest reach) against a throwaway tenant: every
other case has its path ids replaced by that tenant's real ids, so generated bodies reach the
services instead of stopping at a 404. ``/v1`` routes use a key that may call only "sim"
(a real replica); every other case names "sim", with output capped to keep it quick.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.tenancy import World, login, ok

pytestmark = pytest.mark.postgres

# Per operation; about 48 operations. Raise it for a longer hunt: LINGYUN_FUZZ_EXAMPLES=50.
MAX_EXAMPLES = int(os.environ.get("LINGYUN_FUZZ_EXAMPLES", "10"))
# Logging out would end the session the other operations run with.
# Prices and deployments are platform-wide: fuzzed ones would bill or redeploy the models the
# other suites share this server with (tests/api/admin covers those routes).
SKIP = {"/admin/v1/auth/logout", "/admin/v1/prices/{model}", "/admin/v1/deployments",
        "/admin/v1/deployments/{name}"}  # fmt: skip


def _fuzz_tenant(world: World) -> dict[str, str]:
    """Real ids of a tenant made for this test alone, by path parameter name."""
    root = world.root
    tenant = ok(root.post("/tenants", json={"name": f"fuzz-{world.suffix}"}), 201)
    project = ok(root.post(f"/tenants/{tenant['id']}/projects", json={"name": "p"}), 201)
    user = ok(root.post(f"/tenants/{tenant['id']}/users", json={
        "email": f"fuzz@fuzz-{world.suffix}.test", "password": "fuzz-fuzz-fuzz", "role": "member",
        "project_id": project["id"]}), 201)  # fmt: skip
    binding = ok(root.get(f"/tenants/{tenant['id']}/role-bindings"))["data"][0]
    key = ok(root.post(f"/projects/{project['id']}/keys", json={"name": "k"}), 201)
    grant = ok(root.post(f"/tenants/{tenant['id']}/model-grants", json={"model": "sim"}), 201)
    return {"tenant_id": tenant["id"], "project_id": project["id"], "user_id": user["id"],
            "binding_id": binding["id"], "key_id": key["id"], "grant_id": grant["id"],
            "model": "sim"}  # fmt: skip


def test_no_server_errors(world: World) -> None:
    # Its own admin session, so that nothing schemathesis sends can log the suite's root out.
    with login(world.base_url, world.root_email) as client:
        admin_auth = str(client.headers["authorization"])
    real = _fuzz_tenant(world)
    api = schemathesis.openapi.from_url(f"{world.base_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        if operation.path in SKIP:
            continue
        operations += 1
        auth = f"Bearer {world.a.team_key}" if operation.path.startswith("/v1") else admin_auth
        _checker(operation, auth, real, failures)()
    assert operations >= 30, operations
    assert not failures, "\n".join(failures[:20])


def _realistic(case: Any, real: dict[str, str]) -> None:
    for name in list(case.path_parameters or {}):
        if name in real:
            case.path_parameters[name] = real[name]
    if isinstance(case.body, dict) and case.path.startswith("/v1"):
        case.body["model"] = "sim"
        for field in ("max_tokens", "max_completion_tokens"):
            if isinstance(case.body.get(field), int):
                case.body[field] = max(1, min(case.body[field], 8))
        case.body.pop("n", None)


def _checker(
    operation: Any, auth: str, real: dict[str, str], failures: list[str]
) -> Callable[[], None]:
    turn = itertools.count()

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        if next(turn) % 2:
            _realistic(case, real)
        response = case.call(headers={"authorization": auth}, timeout=30)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} body={case.body!r:.300} "
                f"query={case.query!r:.200} -> {response.status_code}: {response.text[:300]}"
            )

    return check  # type: ignore[no-any-return]
