"""Rows -> response models (one place, so no route can leak a column such as a hash)."""

from __future__ import annotations

from lingyun.api.admin.schemas import (
    AuditEventResponse,
    BindingResponse,
    KeyResponse,
    MeResponse,
    ModelGrantResponse,
    ProjectResponse,
    TenantResponse,
    UserResponse,
)
from lingyun.store.access import AuditEvent, ModelGrant, RoleBinding, User
from lingyun.store.models import ApiKey, Project, Tenant
from lingyun.tenancy.priority import checked
from lingyun.tenancy.roles import Principal, Role


def tenant(t: Tenant) -> TenantResponse:
    return TenantResponse(id=t.id, name=t.name, weight=t.weight, created_at=t.created_at)


def project(p: Project) -> ProjectResponse:
    return ProjectResponse(
        id=p.id, tenant_id=p.tenant_id, name=p.name, created_at=p.created_at,
        prompt_log_retention_seconds=p.prompt_log_retention_s,
        priority=checked(p.priority),
    )  # fmt: skip


def key(k: ApiKey) -> KeyResponse:
    return KeyResponse(
        id=k.id, tenant_id=k.tenant_id, project_id=k.project_id, name=k.name, prefix=k.prefix,
        created_at=k.created_at, expires_at=k.expires_at, revoked_at=k.revoked_at,
        last_used_at=k.last_used_at, priority=checked(k.priority), models=k.models,
    )  # fmt: skip


def user(u: User) -> UserResponse:
    return UserResponse(
        id=u.id, email=u.email, created_at=u.created_at, disabled=u.disabled_at is not None
    )


def binding(b: RoleBinding) -> BindingResponse:
    return BindingResponse(
        id=b.id, user_id=b.user_id, role=Role(b.role), tenant_id=b.tenant_id,
        project_id=b.project_id,
    )  # fmt: skip


def me(p: Principal) -> MeResponse:
    return MeResponse(
        user_id=p.user_id,
        email=p.email,
        platform_admin=p.is_platform_admin,
        bindings=[
            BindingResponse(role=b.role, tenant_id=b.tenant_id, project_id=b.project_id)
            for b in p.bindings
        ],
    )


def grant(g: ModelGrant) -> ModelGrantResponse:
    return ModelGrantResponse(
        id=g.id, tenant_id=g.tenant_id, project_id=g.project_id, model=g.model,
        created_at=g.created_at,
    )  # fmt: skip


def audit(e: AuditEvent) -> AuditEventResponse:
    return AuditEventResponse(
        id=e.id, created_at=e.created_at, actor=e.actor, actor_user_id=e.actor_user_id,
        source=e.source, action=e.action, tenant_id=e.tenant_id, project_id=e.project_id,
        target_type=e.target_type, target_id=e.target_id, details=e.details,
    )  # fmt: skip
