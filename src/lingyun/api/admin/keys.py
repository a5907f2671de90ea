"""API keys over ``/admin/v1``: create (the secret is in that one response), list (never a
secret), revoke (this gateway forgets the key at once, others within a second), set a
priority (the same)."""

from __future__ import annotations

from fastapi import APIRouter

from lingyun.api.admin import convert
from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import (
    CreatedKeyResponse,
    IdPath,
    KeyCreateRequest,
    KeyResponse,
    ListResponse,
    PriorityUpdateRequest,
)
from lingyun.errors import PermissionDeniedError
from lingyun.store.models import ApiKey

router = APIRouter(tags=["admin: keys"])


@router.get("/tenants/{tenant_id}/keys", response_model=ListResponse[KeyResponse])
async def list_tenant_keys(tenant_id: IdPath, ctx: AdminCtx) -> ListResponse[KeyResponse]:
    await ctx.visible_tenant(tenant_id)
    rows = await ctx.tenancy.list_keys_in(tenant_id)
    p = ctx.principal
    return ListResponse(
        data=[convert.key(k) for k in rows if p.can_see_project(tenant_id, k.project_id)]
    )


@router.get("/projects/{project_id}/keys", response_model=ListResponse[KeyResponse])
async def list_project_keys(project_id: IdPath, ctx: AdminCtx) -> ListResponse[KeyResponse]:
    project = await ctx.visible_project(project_id)
    rows = await ctx.tenancy.list_keys_in(project.tenant_id, project.id)
    return ListResponse(data=[convert.key(k) for k in rows])


@router.post("/projects/{project_id}/keys", response_model=CreatedKeyResponse, status_code=201)
async def create_key(
    project_id: IdPath, body: KeyCreateRequest, ctx: AdminCtx
) -> CreatedKeyResponse:
    project = await ctx.visible_project(project_id)
    if not ctx.principal.can_use_project(project.tenant_id, project.id):
        raise PermissionDeniedError("Viewers may not create keys.")
    created = await ctx.tenancy.create_key_in(project, body.name, body.expires_at, actor=ctx.actor,
                                              models=body.models)  # fmt: skip
    row = await ctx.tenancy.key_by_id(created.id)
    return CreatedKeyResponse(**convert.key(row).model_dump(), key=created.key)


@router.get("/keys/{key_id}", response_model=KeyResponse)
async def get_key(key_id: IdPath, ctx: AdminCtx) -> KeyResponse:
    return convert.key(await ctx.visible_key(key_id))


@router.post("/keys/{key_id}/revoke", response_model=KeyResponse)
async def revoke_key(key_id: IdPath, ctx: AdminCtx) -> KeyResponse:
    key = await ctx.visible_key(key_id)
    if not ctx.principal.can_use_project(key.tenant_id, key.project_id):
        raise PermissionDeniedError("Viewers may not revoke keys.")
    await ctx.tenancy.revoke_key(key.id, actor=ctx.actor)
    ctx.keys_changed()
    return convert.key(await ctx.tenancy.key_by_id(key.id))


@router.patch("/keys/{key_id}", response_model=KeyResponse)
async def set_key_priority(
    key_id: IdPath, body: PriorityUpdateRequest, ctx: AdminCtx
) -> KeyResponse:
    """Priority bands are shared by every tenant of a deployment: a platform matter."""
    key = await ctx.visible_key(key_id)
    ctx.principal.require_platform_admin()
    await ctx.tenancy.set_priority(ApiKey, key.id, body.priority, actor=ctx.actor)
    ctx.keys_changed()
    return convert.key(await ctx.tenancy.key_by_id(key.id))
