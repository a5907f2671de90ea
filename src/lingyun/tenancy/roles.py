"""Roles and the authorization policy of the admin API.

    platform_admin   everything, every tenant (no scope)
    tenant_admin     one tenant: its projects, keys, users, role bindings, grants, audit log
    project_admin    one project: its keys and its users' bindings (project roles only)
    member           a tenant or one project: read, and create/revoke keys there
    viewer           a tenant or one project: read only

Two questions, asked in this order by every admin route:
1. May the principal *see* the object? If not, the route answers 404 exactly as for an id
   that does not exist, so ids cannot be probed.
2. May it *change* it? If not, 403 ``permission_denied``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from lingyun.errors import InvalidRequestError, NotFoundError, PermissionDeniedError


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    TENANT_ADMIN = "tenant_admin"
    PROJECT_ADMIN = "project_admin"
    MEMBER = "member"
    VIEWER = "viewer"


# Roles that may be bound to a project (the rest are tenant- or platform-wide).
PROJECT_ROLES = frozenset({Role.PROJECT_ADMIN, Role.MEMBER, Role.VIEWER})
TENANT_ROLES = frozenset({Role.TENANT_ADMIN, Role.MEMBER, Role.VIEWER})


@dataclass(frozen=True)
class Binding:
    role: Role
    tenant_id: str | None = None
    project_id: str | None = None


@dataclass(frozen=True)
class Principal:
    """A logged-in user and what they are bound to."""

    user_id: str
    email: str
    bindings: tuple[Binding, ...] = field(default_factory=tuple)

    @property
    def is_platform_admin(self) -> bool:
        return any(b.role is Role.PLATFORM_ADMIN for b in self.bindings)

    def tenant_ids(self) -> set[str]:
        """Tenants where the principal holds any binding."""
        return {b.tenant_id for b in self.bindings if b.tenant_id is not None}

    # -- seeing -------------------------------------------------------------------------
    def can_see_tenant(self, tenant_id: str) -> bool:
        return self.is_platform_admin or tenant_id in self.tenant_ids()

    def can_see_project(self, tenant_id: str, project_id: str) -> bool:
        if self.is_platform_admin:
            return True
        for b in self.bindings:
            if b.tenant_id != tenant_id:
                continue
            if b.project_id is None or b.project_id == project_id:
                return True
        return False

    # -- changing -----------------------------------------------------------------------
    def is_tenant_admin(self, tenant_id: str) -> bool:
        return self.is_platform_admin or any(
            b.role is Role.TENANT_ADMIN and b.tenant_id == tenant_id for b in self.bindings
        )

    def is_project_admin(self, tenant_id: str, project_id: str) -> bool:
        return self.is_tenant_admin(tenant_id) or any(
            b.role is Role.PROJECT_ADMIN and b.project_id == project_id for b in self.bindings
        )

    def can_use_project(self, tenant_id: str, project_id: str) -> bool:
        """Create and revoke keys: members and admins, not viewers."""
        if self.is_project_admin(tenant_id, project_id):
            return True
        return any(
            b.role is Role.MEMBER
            and b.tenant_id == tenant_id
            and (b.project_id is None or b.project_id == project_id)
            for b in self.bindings
        )

    def can_bind(self, role: Role, tenant_id: str | None, project_id: str | None) -> bool:
        """May this principal hand out ``role`` at this scope? Never more than it holds."""
        if self.is_platform_admin:
            return True
        if role is Role.PLATFORM_ADMIN or tenant_id is None:
            return False
        if project_id is None:
            return self.is_tenant_admin(tenant_id)
        return role in PROJECT_ROLES and self.is_project_admin(tenant_id, project_id)

    # -- raising helpers ----------------------------------------------------------------
    def require_platform_admin(self) -> None:
        if not self.is_platform_admin:
            raise PermissionDeniedError("Only a platform admin may do this.")

    def require_tenant_visible(self, tenant_id: str) -> None:
        if not self.can_see_tenant(tenant_id):
            raise not_found("tenant", tenant_id)

    def require_project_visible(self, tenant_id: str, project_id: str) -> None:
        if not self.can_see_project(tenant_id, project_id):
            raise not_found("project", project_id)

    def require_tenant_admin(self, tenant_id: str) -> None:
        self.require_tenant_visible(tenant_id)
        if not self.is_tenant_admin(tenant_id):
            raise PermissionDeniedError("Only this tenant's admins may do this.")

    def require_project_admin(self, tenant_id: str, project_id: str) -> None:
        self.require_project_visible(tenant_id, project_id)
        if not self.is_project_admin(tenant_id, project_id):
            raise PermissionDeniedError("Only this project's admins may do this.")


def not_found(kind: str, ident: str) -> NotFoundError:
    """The one 404 for an id that does not exist and an id the caller may not see."""
    return NotFoundError(f"No {kind} {ident!r}.", param=f"{kind}_id", code="not_found")


def validate_scope(role: Role, tenant_id: str | None, project_id: str | None) -> None:
    """The shapes a binding may take (see the store's docstring)."""

    if role is Role.PLATFORM_ADMIN:
        if tenant_id is not None or project_id is not None:
            raise InvalidRequestError("platform_admin has no tenant or project.", param="role")
        return
    if tenant_id is None:
        raise InvalidRequestError(f"{role.value} needs a tenant.", param="tenant_id")
    if role is Role.TENANT_ADMIN and project_id is not None:
        raise InvalidRequestError("tenant_admin is tenant-wide; omit project_id.", param="role")
    if role is Role.PROJECT_ADMIN and project_id is None:
        raise InvalidRequestError("project_admin needs a project.", param="project_id")
