"""``/admin/v1/tenants`` and ``/admin/v1/projects``.

Creating and re-weighting tenants are platform matters; a tenant's admins create its
projects. Anything the caller may not see answers the same 404 as an unknown id.
"""

from __future__ import annotations

from fastapi import APIRouter

from lingyun.api.admin import convert
from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import (
    EndQuery,
    IdPath,
    ListResponse,
    ProjectCreateRequest,
    ProjectResponse,
    StartQuery,
    TenantCreateRequest,
    TenantResponse,
    TenantUpdateRequest,
    UsageResponse,
)
from lingyun.metering.accounts import set_free_only
from lingyun.tenancy.usage import default_window, usage_report

router = APIRouter(tags=["admin: tenants"])


@router.get("/tenants", response_model=ListResponse[TenantResponse])
async def list_tenants(ctx: AdminCtx) -> ListResponse[TenantResponse]:
    rows = await ctx.tenancy.list_tenants()
    p = ctx.principal
    return ListResponse(data=[convert.tenant(t) for t in rows if p.can_see_tenant(t.id)])


@router.post("/tenants", response_model=TenantResponse, status_code=201)
async def create_tenant(body: TenantCreateRequest, ctx: AdminCtx) -> TenantResponse:
    ctx.principal.require_platform_admin()
    tenant = await ctx.tenancy.create_tenant(body.name, weight=body.weight, actor=ctx.actor)
    return convert.tenant(tenant)


@router.get("/tenants/{tenant_id}", response_model=TenantResponse)
async def get_tenant(tenant_id: IdPath, ctx: AdminCtx) -> TenantResponse:
    return convert.tenant(await ctx.visible_tenant(tenant_id))


@router.patch("/tenants/{tenant_id}", response_model=TenantResponse)
async def update_tenant(
    tenant_id: IdPath, body: TenantUpdateRequest, ctx: AdminCtx
) -> TenantResponse:
    await ctx.visible_tenant(tenant_id)
    ctx.principal.require_platform_admin()
    tenant = await ctx.tenancy.update_tenant_by_id(tenant_id, body.weight, ctx.actor)
    if body.free_only is not None:
        await set_free_only(ctx.db, tenant_id, body.free_only)
    return convert.tenant(tenant)


@router.get("/tenants/{tenant_id}/projects", response_model=ListResponse[ProjectResponse])
async def list_projects(tenant_id: IdPath, ctx: AdminCtx) -> ListResponse[ProjectResponse]:
    await ctx.visible_tenant(tenant_id)
    rows = await ctx.tenancy.list_projects(tenant_id)
    p = ctx.principal
    return ListResponse(
        data=[convert.project(r) for r in rows if p.can_see_project(tenant_id, r.id)]
    )


@router.post("/tenants/{tenant_id}/projects", response_model=ProjectResponse, status_code=201)
async def create_project(
    tenant_id: IdPath, body: ProjectCreateRequest, ctx: AdminCtx
) -> ProjectResponse:
    await ctx.visible_tenant(tenant_id)
    ctx.principal.require_tenant_admin(tenant_id)
    project = await ctx.tenancy.create_project_in(tenant_id, body.name, actor=ctx.actor)
    return convert.project(project)


@router.get("/projects/{project_id}", response_model=ProjectResponse)
async def get_project(project_id: IdPath, ctx: AdminCtx) -> ProjectResponse:
    return convert.project(await ctx.visible_project(project_id))


@router.get("/tenants/{tenant_id}/usage", response_model=UsageResponse)
async def tenant_usage(
    tenant_id: IdPath,
    ctx: AdminCtx,
    start: StartQuery = None,
    end: EndQuery = None,
) -> UsageResponse:
    await ctx.visible_tenant(tenant_id)
    lo, hi = default_window(start, end)
    p = ctx.principal
    rows = [
        r
        for r in await usage_report(ctx.db, tenant_id, lo, hi)
        if p.can_see_project(tenant_id, r.project_id)
    ]
    return UsageResponse(
        tenant_id=tenant_id, start=lo, end=hi, data=[convert.usage(r) for r in rows]
    )
