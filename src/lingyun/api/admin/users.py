"""Users and role bindings over ``/admin/v1``.

Nobody hands out more than they hold (:meth:`Principal.can_bind`): a tenant admin binds
roles in its tenant, a project admin project roles in its project, members and viewers
nothing. Users outside the caller's tenant are invisible (404), as are their bindings.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from lingyun.api.admin import convert
from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import (
    BindingResponse,
    IdPath,
    ListResponse,
    RoleBindingCreateRequest,
    TenantUserCreateRequest,
    UserCreateRequest,
    UserResponse,
)
from lingyun.errors import InvalidRequestError, PermissionDeniedError
from lingyun.tenancy.roles import Role, not_found

router = APIRouter(tags=["admin: users"])


def _deny() -> PermissionDeniedError:
    return PermissionDeniedError("You may not grant this role at this scope.")


@router.get("/users", response_model=ListResponse[UserResponse])
async def list_users(ctx: AdminCtx) -> ListResponse[UserResponse]:
    ctx.principal.require_platform_admin()
    return ListResponse(data=[convert.user(u) for u in await ctx.users.list_users()])


@router.post("/users", response_model=UserResponse, status_code=201)
async def create_user(body: UserCreateRequest, ctx: AdminCtx) -> UserResponse:
    ctx.principal.require_platform_admin()
    role = Role.PLATFORM_ADMIN if body.platform_admin else None
    user = await ctx.users.create_user(body.email, body.password, actor=ctx.actor, role=role)
    return convert.user(user)


@router.get("/users/{user_id}", response_model=UserResponse)
async def get_user(user_id: IdPath, ctx: AdminCtx) -> UserResponse:
    p = ctx.principal
    if not p.is_platform_admin and user_id != p.user_id:
        shared = {b.tenant_id for b in await ctx.users.bindings(user_id=user_id)}
        if not any(t is not None and p.is_tenant_admin(t) for t in shared):
            raise not_found("user", user_id)
    return convert.user(await ctx.users.user_by_id(user_id))


@router.get("/tenants/{tenant_id}/users", response_model=ListResponse[UserResponse])
async def list_tenant_users(tenant_id: IdPath, ctx: AdminCtx) -> ListResponse[UserResponse]:
    await ctx.visible_tenant(tenant_id)
    ctx.principal.require_tenant_admin(tenant_id)
    return ListResponse(data=[convert.user(u) for u in await ctx.users.list_users(tenant_id)])


@router.post("/tenants/{tenant_id}/users", response_model=UserResponse, status_code=201)
async def create_tenant_user(
    tenant_id: IdPath, body: TenantUserCreateRequest, ctx: AdminCtx
) -> UserResponse:
    await ctx.visible_tenant(tenant_id)
    role = Role(body.role)
    if body.project_id is not None:
        await _project_in(ctx, tenant_id, body.project_id)
    if not ctx.principal.can_bind(role, tenant_id, body.project_id):
        raise _deny()
    user = await ctx.users.create_user(
        body.email, body.password, actor=ctx.actor, role=role, tenant_id=tenant_id,
        project_id=body.project_id,
    )  # fmt: skip
    return convert.user(user)


@router.get("/tenants/{tenant_id}/role-bindings", response_model=ListResponse[BindingResponse])
async def list_bindings(tenant_id: IdPath, ctx: AdminCtx) -> ListResponse[BindingResponse]:
    await ctx.visible_tenant(tenant_id)
    p = ctx.principal
    rows = [
        b
        for b in await ctx.users.bindings(tenant_id=tenant_id)
        if p.is_tenant_admin(tenant_id)
        or b.user_id == p.user_id
        or (b.project_id is not None and p.is_project_admin(tenant_id, b.project_id))
    ]
    return ListResponse(data=[convert.binding(b) for b in rows])


@router.post("/tenants/{tenant_id}/role-bindings", response_model=BindingResponse, status_code=201)
async def create_binding(
    tenant_id: IdPath, body: RoleBindingCreateRequest, ctx: AdminCtx
) -> BindingResponse:
    await ctx.visible_tenant(tenant_id)
    p = ctx.principal
    role = Role(body.role)
    if body.project_id is not None:
        await _project_in(ctx, tenant_id, body.project_id)
    # The target user must already belong to this tenant (or the caller is platform admin):
    # otherwise user ids of other tenants could be probed or pulled in.
    if not p.is_platform_admin:
        theirs = await ctx.users.bindings(user_id=body.user_id, tenant_id=tenant_id)
        if not theirs:
            raise not_found("user", body.user_id)
    if not p.can_bind(role, tenant_id, body.project_id):
        raise _deny()
    row = await ctx.users.bind(body.user_id, role, tenant_id, body.project_id, actor=ctx.actor)
    return convert.binding(row)


@router.delete("/role-bindings/{binding_id}", status_code=204, response_class=Response)
async def delete_binding(binding_id: IdPath, ctx: AdminCtx) -> Response:
    p = ctx.principal
    row = await ctx.users.binding_by_id(binding_id)
    visible = p.is_platform_admin or (row.tenant_id is not None and p.can_see_tenant(row.tenant_id))
    if not visible:
        raise not_found("role_binding", binding_id)
    if not p.can_bind(Role(row.role), row.tenant_id, row.project_id):
        raise _deny()
    if row.role == Role.PLATFORM_ADMIN and row.user_id == p.user_id:
        raise InvalidRequestError("You may not remove your own platform_admin role.")
    await ctx.users.unbind(binding_id, actor=ctx.actor)
    return Response(status_code=204)


async def _project_in(ctx: AdminCtx, tenant_id: str, project_id: str) -> None:
    project = await ctx.visible_project(project_id)
    if project.tenant_id != tenant_id:
        raise not_found("project", project_id)
