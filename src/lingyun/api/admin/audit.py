"""The audit log over ``/admin/v1``: a tenant's admins read their tenant's events; platform
admins read everything."""

from __future__ import annotations

from fastapi import APIRouter, Query

from lingyun.api.admin import convert
from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import AuditEventResponse, IdPath, ListResponse
from lingyun.tenancy.audit import list_events

router = APIRouter(tags=["admin: audit"])

Limit = Query(default=100, ge=1, le=1000)
Before = Query(default=None, ge=1, le=2**62, description="Only events with a smaller id.")


@router.get("/audit", response_model=ListResponse[AuditEventResponse])
async def platform_audit(
    ctx: AdminCtx, limit: int = Limit, before: int | None = Before
) -> ListResponse[AuditEventResponse]:
    ctx.principal.require_platform_admin()
    rows = await list_events(ctx.db, limit=limit, before_id=before)
    return ListResponse(data=[convert.audit(e) for e in rows])


@router.get("/tenants/{tenant_id}/audit", response_model=ListResponse[AuditEventResponse])
async def tenant_audit(
    tenant_id: IdPath, ctx: AdminCtx, limit: int = Limit, before: int | None = Before
) -> ListResponse[AuditEventResponse]:
    await ctx.visible_tenant(tenant_id)
    ctx.principal.require_tenant_admin(tenant_id)
    rows = await list_events(ctx.db, tenant_id=tenant_id, limit=limit, before_id=before)
    return ListResponse(data=[convert.audit(e) for e in rows])
