"""Property-based requests from the OpenAPI schema of ``/v1`` and ``/admin/v1``: whatever
schemathesis sends, the server answers without a 5xx.

Admin routes run as a platform admin (the widest reach); ``/v1`` routes with a key that may
use only the "sim" model, whose replica is real, so no request can legitimately 5xx.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.tenancy import ROOT_EMAIL, World, login

pytestmark = pytest.mark.postgres

MAX_EXAMPLES = 15
# Logging out would end the session the other operations run with.
SKIP = {"/admin/v1/auth/logout"}


def test_no_server_errors(world: World) -> None:
    # Its own admin session, so that nothing schemathesis sends can log the suite's root out.
    with login(world.base_url, ROOT_EMAIL) as client:
        admin_auth = str(client.headers["authorization"])
    api = schemathesis.openapi.from_url(f"{world.base_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        if operation.path in SKIP:
            continue
        operations += 1
        v1 = operation.path.startswith("/v1")
        _checker(operation, f"Bearer {world.a.team_key}" if v1 else admin_auth, failures)()
    assert operations >= 30, operations
    assert not failures, "\n".join(failures[:20])


def _checker(operation: Any, auth: str, failures: list[str]) -> Callable[[], None]:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        response = case.call(headers={"authorization": auth}, timeout=30)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} body={case.body!r:.300} "
                f"query={case.query!r:.200} -> {response.status_code}: {response.text[:300]}"
            )

    return check  # type: ignore[no-any-return]
