"""Model grants over ``/admin/v1``. Tenant-wide grants are the platform's to give; a tenant's
admins narrow them per project (a project can never see more than its tenant)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from lingyun.api.admin import convert
from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import (
    IdPath,
    ListResponse,
    ModelGrantCreateRequest,
    ModelGrantResponse,
    ModelResponse,
)
from lingyun.gateway.resolve import ModelCatalog
from lingyun.tenancy.grants import load_snapshot
from lingyun.tenancy.roles import not_found

router = APIRouter(tags=["admin: models"])


@router.get("/tenants/{tenant_id}/model-grants", response_model=ListResponse[ModelGrantResponse])
async def list_grants(tenant_id: IdPath, ctx: AdminCtx) -> ListResponse[ModelGrantResponse]:
    await ctx.visible_tenant(tenant_id)
    p = ctx.principal
    rows = [
        g
        for g in await ctx.grants.list(tenant_id)
        if g.project_id is None or p.can_see_project(tenant_id, g.project_id)
    ]
    return ListResponse(data=[convert.grant(g) for g in rows])


@router.post(
    "/tenants/{tenant_id}/model-grants", response_model=ModelGrantResponse, status_code=201
)
async def create_grant(
    tenant_id: IdPath, body: ModelGrantCreateRequest, ctx: AdminCtx
) -> ModelGrantResponse:
    await ctx.visible_tenant(tenant_id)
    if body.project_id is None:
        ctx.principal.require_platform_admin()
    else:
        project = await ctx.visible_project(body.project_id)
        if project.tenant_id != tenant_id:
            raise not_found("project", body.project_id)
        ctx.principal.require_tenant_admin(tenant_id)
    row = await ctx.grants.grant(tenant_id, body.model, body.project_id, actor=ctx.actor)
    await ctx.grants_changed()
    return convert.grant(row)


@router.delete("/model-grants/{grant_id}", status_code=204, response_class=Response)
async def delete_grant(grant_id: IdPath, ctx: AdminCtx) -> Response:
    row = await ctx.grants.grant_by_id(grant_id)
    p = ctx.principal
    if not p.can_see_tenant(row.tenant_id) or (
        row.project_id is not None and not p.can_see_project(row.tenant_id, row.project_id)
    ):
        raise not_found("model_grant", grant_id)
    if row.project_id is None:
        p.require_platform_admin()
    else:
        p.require_tenant_admin(row.tenant_id)
    await ctx.grants.revoke_by_id(grant_id, actor=ctx.actor)
    await ctx.grants_changed()
    return Response(status_code=204)


@router.get("/models", response_model=ListResponse[ModelResponse])
async def list_models(ctx: AdminCtx) -> ListResponse[ModelResponse]:
    """Platform admins see every deployment; others the models their tenants may use."""
    gateway = getattr(ctx.request.app.state, "gateway", None)
    catalog: ModelCatalog = gateway.catalog if gateway is not None else ModelCatalog()
    deps = catalog.deployments()
    p = ctx.principal
    if p.is_platform_admin:
        return ListResponse(
            data=[ModelResponse(id=d.name, engine=d.engine, aliases=d.aliases) for d in deps]
        )
    snapshot = await load_snapshot(ctx.db)
    tenants = p.tenant_ids()
    visible = [d for d in deps if any(snapshot.allowed(t, None, d.name) for t in tenants)]
    return ListResponse(data=[ModelResponse(id=d.name) for d in visible])
