"""The authorization policy and the grant rule, without a server."""

from __future__ import annotations

import pytest

from lingyun.tenancy.grants import GrantSnapshot
from lingyun.tenancy.roles import Binding, Principal, Role

T, U, P, Q = "ten_a", "ten_b", "prj_a1", "prj_a2"


def who(*bindings: Binding) -> Principal:
    return Principal("usr_x", "x@example.test", bindings)


PLATFORM = who(Binding(Role.PLATFORM_ADMIN))
TENANT_ADMIN = who(Binding(Role.TENANT_ADMIN, T))
PROJECT_ADMIN = who(Binding(Role.PROJECT_ADMIN, T, P))
MEMBER = who(Binding(Role.MEMBER, T, P))
VIEWER = who(Binding(Role.VIEWER, T))


@pytest.mark.parametrize(
    ("principal", "role", "tenant", "project", "allowed"),
    [
        pytest.param(PLATFORM, Role.PLATFORM_ADMIN, None, None, True, id="platform-any"),
        pytest.param(TENANT_ADMIN, Role.PLATFORM_ADMIN, None, None, False, id="ta-platform"),
        pytest.param(TENANT_ADMIN, Role.TENANT_ADMIN, T, None, True, id="ta-own-tenant"),
        pytest.param(TENANT_ADMIN, Role.TENANT_ADMIN, U, None, False, id="ta-other-tenant"),
        pytest.param(TENANT_ADMIN, Role.MEMBER, T, Q, True, id="ta-project-role"),
        pytest.param(PROJECT_ADMIN, Role.MEMBER, T, P, True, id="pa-member-own"),
        pytest.param(PROJECT_ADMIN, Role.PROJECT_ADMIN, T, P, True, id="pa-peer-own"),
        pytest.param(PROJECT_ADMIN, Role.MEMBER, T, Q, False, id="pa-other-project"),
        pytest.param(PROJECT_ADMIN, Role.TENANT_ADMIN, T, None, False, id="pa-tenant-admin"),
        pytest.param(PROJECT_ADMIN, Role.MEMBER, T, None, False, id="pa-tenant-wide"),
        pytest.param(MEMBER, Role.MEMBER, T, P, False, id="member-nothing"),
        pytest.param(VIEWER, Role.VIEWER, T, None, False, id="viewer-nothing"),
    ],
)
def test_can_bind(
    principal: Principal, role: Role, tenant: str | None, project: str | None, allowed: bool
) -> None:
    assert principal.can_bind(role, tenant, project) is allowed


def test_visibility_and_use() -> None:
    assert PLATFORM.can_see_project(U, "prj_z")
    assert TENANT_ADMIN.can_see_project(T, Q) and not TENANT_ADMIN.can_see_tenant(U)
    assert PROJECT_ADMIN.can_see_project(T, P) and not PROJECT_ADMIN.can_see_project(T, Q)
    assert PROJECT_ADMIN.can_see_tenant(T)
    assert MEMBER.can_use_project(T, P) and not MEMBER.can_use_project(T, Q)
    assert VIEWER.can_see_project(T, Q) and not VIEWER.can_use_project(T, Q)


@pytest.mark.parametrize(
    ("tenant", "project", "model", "allowed"),
    [
        pytest.param({}, {}, "m", True, id="no-grants-all"),
        pytest.param({T: {"m"}}, {}, "m", True, id="tenant-granted"),
        pytest.param({T: {"m"}}, {}, "n", False, id="tenant-not-granted"),
        pytest.param({T: {"*"}}, {}, "n", True, id="tenant-star"),
        pytest.param({T: {"m", "n"}}, {P: {"m"}}, "n", False, id="project-narrows"),
        pytest.param({T: {"m"}}, {P: {"n"}}, "n", False, id="project-cannot-widen"),
        pytest.param({}, {P: {"*"}}, "n", True, id="project-star"),
        pytest.param({U: {"m"}}, {Q: {"m"}}, "n", True, id="others-grants-irrelevant"),
    ],
)
def test_grant_rule(
    tenant: dict[str, set[str]], project: dict[str, set[str]], model: str, allowed: bool
) -> None:
    snap = GrantSnapshot(
        {k: frozenset(v) for k, v in tenant.items()}, {k: frozenset(v) for k, v in project.items()}
    )
    assert snap.allowed(T, P, model) is allowed
