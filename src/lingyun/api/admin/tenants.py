"""``/admin/v1/tenants`` and ``/admin/v1/projects``.

Creating and re-weighting tenants are platform matters; a tenant's admins create its
projects. Anything the caller may not see answers the same 404 as an unknown id.
"""

from __future__ import annotations

from fastapi import APIRouter

from lingyun.api.admin import convert
from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import (
    IdPath,
    ListResponse,
    PriorityUpdateRequest,
    ProjectCreateRequest,
    ProjectResponse,
    PromptLoggingRequest,
    TenantCreateRequest,
    TenantResponse,
    TenantUpdateRequest,
)
from lingyun.api.usage import EndQuery, StartQuery, UsageResponse, usage_response
from lingyun.errors import InvalidRequestError
from lingyun.metering.accounts import set_free_only
from lingyun.store.models import Project
from lingyun.tenancy.prompt_logging import set_prompt_logging

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


@router.put("/projects/{project_id}/prompt-logging", response_model=ProjectResponse)
async def put_prompt_logging(
    project_id: IdPath, body: PromptLoggingRequest, ctx: AdminCtx
) -> ProjectResponse:
    """Store prompts and completions of this project for ``retention_seconds``, or stop (and
    erase what is stored). The project's, its tenant's or the platform's admins only."""
    project = await ctx.visible_project(project_id)
    ctx.principal.require_project_admin(project.tenant_id, project.id)
    if body.enabled and body.retention_seconds is None:
        raise InvalidRequestError(
            "Turning prompt logging on needs retention_seconds.", param="retention_seconds"
        )
    retention = body.retention_seconds if body.enabled else None
    project = await set_prompt_logging(ctx.db, project_id, retention, ctx.actor)
    ctx.keys_changed()  # this gateway's keys carry the setting: look them up again
    return convert.project(project)


@router.patch("/projects/{project_id}", response_model=ProjectResponse)
async def set_project_priority(
    project_id: IdPath, body: PriorityUpdateRequest, ctx: AdminCtx
) -> ProjectResponse:
    """Priority bands are shared by every tenant of a deployment: a platform matter."""
    await ctx.visible_project(project_id)
    ctx.principal.require_platform_admin()
    await ctx.tenancy.set_priority(Project, project_id, body.priority, actor=ctx.actor)
    ctx.keys_changed()
    return convert.project(await ctx.tenancy.project_by_id(project_id))


@router.get("/tenants/{tenant_id}/usage", response_model=UsageResponse)
async def tenant_usage(
    tenant_id: IdPath,
    ctx: AdminCtx,
    start: StartQuery = None,
    end: EndQuery = None,
) -> UsageResponse:
    await ctx.visible_tenant(tenant_id)
    p = ctx.principal
    return await usage_response(
        ctx.db, tenant_id, start, end, lambda r: p.can_see_project(tenant_id, r.project_id)
    )
