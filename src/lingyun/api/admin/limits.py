"""Per-tenant, per-project and per-key rate limits and monthly budgets over ``/admin/v1``.

The rules live where their enforcers read them: rate limits in ``store/limits.py`` (written
through :class:`lingyun.admission.rules.LimitService`, picked up by every gateway within a
second), budgets in ``store/ledger.py`` (``metering.accounts.set_budget``). This router adds
who-may-change-what and the audit trail. Tenant-wide limits and budgets are the platform's
(they bound what a tenant may consume); a tenant's admins set them per project, a project's
admins per key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from lingyun.admission.rules import LimitService, LimitValues, Subject
from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import IdPath, ListResponse, ModelName
from lingyun.metering.accounts import set_budget
from lingyun.store.ledger import Budget
from lingyun.tenancy.audit import record

router = APIRouter(tags=["admin: limits and budgets"])

Scope = Literal["tenant", "project", "key"]
Limit = Annotated[int | None, Field(default=None, ge=0, le=10**12)]
ModelQuery = Annotated[
    str | None,
    Query(max_length=256, pattern=r"^[^\x00]*$", description="One model's rule; all if unset."),
]


class LimitSetRequest(BaseModel):
    """Dimensions to change; unset ones keep their value. ``model`` "" = all models."""

    model_config = ConfigDict(extra="forbid")

    model: Literal[""] | ModelName = ""
    rpm: Limit = None
    tpm: Limit = None
    concurrency: Limit = None
    burst: Limit = None


class LimitRuleResponse(BaseModel):
    scope: Scope
    subject_id: str
    model: str
    rpm: int | None
    tpm: int | None
    concurrency: int | None
    burst: int | None


class BudgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    monthly_limit: Annotated[
        str | None,
        Field(pattern=r"^\d{1,15}(\.\d{1,9})?$", description="Decimal amount; null removes."),
    ]


class BudgetResponse(BaseModel):
    scope: Literal["tenant", "project"]
    scope_id: str
    monthly_limit: str | None


async def _subject(ctx: AdminCtx, scope: Scope, ident: str) -> Subject:
    """The subject, if the caller may change its limits (404 if it may not even see it)."""
    p = ctx.principal
    if scope == "tenant":
        await ctx.visible_tenant(ident)
        p.require_platform_admin()
        return Subject("tenant", ident, ident, f"tenant {ident}")
    if scope == "project":
        project = await ctx.visible_project(ident)
        p.require_tenant_admin(project.tenant_id)
        return Subject("project", project.id, project.tenant_id, f"project {project.id}")
    key = await ctx.visible_key(ident)
    p.require_project_admin(key.tenant_id, key.project_id)
    return Subject("key", key.id, key.tenant_id, f"key {key.id}")


@router.get("/tenants/{tenant_id}/limits", response_model=ListResponse[LimitRuleResponse])
async def list_limits(tenant_id: IdPath, ctx: AdminCtx) -> ListResponse[LimitRuleResponse]:
    await ctx.visible_tenant(tenant_id)
    p = ctx.principal
    key_project = {k.id: k.project_id for k in await ctx.tenancy.list_keys_in(tenant_id)}
    out = []
    for r in await LimitService(ctx.db).list(tenant_id):
        project = r.subject_id if r.scope == "project" else key_project.get(r.subject_id)
        if r.scope != "tenant" and (project is None or not p.can_see_project(tenant_id, project)):
            continue
        out.append(LimitRuleResponse(scope=r.scope, subject_id=r.subject_id, model=r.model,
                                     rpm=r.rpm, tpm=r.tpm, concurrency=r.concurrency,
                                     burst=r.burst))  # fmt: skip
    return ListResponse(data=out)


async def _set_limits(
    ctx: AdminCtx, scope: Scope, ident: str, body: LimitSetRequest
) -> LimitRuleResponse:
    subject = await _subject(ctx, scope, ident)
    values = LimitValues(rpm=body.rpm, tpm=body.tpm, concurrency=body.concurrency,
                         burst=body.burst)  # fmt: skip
    rule = await LimitService(ctx.db).set(subject, body.model, values)
    await _audit(ctx, subject, "limits.set", body.model_dump(exclude_unset=True))
    return LimitRuleResponse(scope=rule.scope, subject_id=rule.subject_id, model=rule.model,
                             rpm=rule.rpm, tpm=rule.tpm, concurrency=rule.concurrency,
                             burst=rule.burst)  # fmt: skip


async def _clear_limits(ctx: AdminCtx, scope: Scope, ident: str, model: str | None) -> Response:
    subject = await _subject(ctx, scope, ident)
    await LimitService(ctx.db).clear(subject, model)
    await _audit(ctx, subject, "limits.clear", {"model": model})
    return Response(status_code=204)


async def _audit(ctx: AdminCtx, subject: Subject, action: str, details: dict[str, object]) -> None:
    async with ctx.db.session() as s:
        record(s, ctx.actor, action, target_type=subject.scope, target_id=subject.subject_id,
               tenant_id=subject.tenant_id,
               project_id=subject.subject_id if subject.scope == "project" else None,
               details=details)  # fmt: skip
        await s.commit()


@router.patch("/tenants/{tenant_id}/limits", response_model=LimitRuleResponse)
async def set_tenant_limits(
    tenant_id: IdPath, body: LimitSetRequest, ctx: AdminCtx
) -> LimitRuleResponse:
    return await _set_limits(ctx, "tenant", tenant_id, body)


@router.delete("/tenants/{tenant_id}/limits", status_code=204, response_class=Response)
async def clear_tenant_limits(
    tenant_id: IdPath, ctx: AdminCtx, model: ModelQuery = None
) -> Response:
    return await _clear_limits(ctx, "tenant", tenant_id, model)


@router.patch("/projects/{project_id}/limits", response_model=LimitRuleResponse)
async def set_project_limits(
    project_id: IdPath, body: LimitSetRequest, ctx: AdminCtx
) -> LimitRuleResponse:
    return await _set_limits(ctx, "project", project_id, body)


@router.delete("/projects/{project_id}/limits", status_code=204, response_class=Response)
async def clear_project_limits(
    project_id: IdPath, ctx: AdminCtx, model: ModelQuery = None
) -> Response:
    return await _clear_limits(ctx, "project", project_id, model)


@router.patch("/keys/{key_id}/limits", response_model=LimitRuleResponse)
async def set_key_limits(key_id: IdPath, body: LimitSetRequest, ctx: AdminCtx) -> LimitRuleResponse:
    return await _set_limits(ctx, "key", key_id, body)


@router.delete("/keys/{key_id}/limits", status_code=204, response_class=Response)
async def clear_key_limits(key_id: IdPath, ctx: AdminCtx, model: ModelQuery = None) -> Response:
    return await _clear_limits(ctx, "key", key_id, model)


async def _budget(ctx: AdminCtx, scope: Literal["tenant", "project"], ident: str) -> BudgetResponse:
    async with ctx.db.session() as s:
        row = await s.get(Budget, (scope, ident))
    limit = None if row is None else str(row.monthly_limit.normalize())
    return BudgetResponse(scope=scope, scope_id=ident, monthly_limit=limit)


@router.get("/tenants/{tenant_id}/budget", response_model=BudgetResponse)
async def get_tenant_budget(tenant_id: IdPath, ctx: AdminCtx) -> BudgetResponse:
    await ctx.visible_tenant(tenant_id)
    return await _budget(ctx, "tenant", tenant_id)


@router.put("/tenants/{tenant_id}/budget", response_model=BudgetResponse)
async def set_tenant_budget(
    tenant_id: IdPath, body: BudgetRequest, ctx: AdminCtx
) -> BudgetResponse:
    subject = await _subject(ctx, "tenant", tenant_id)
    return await _set_budget(ctx, subject, body)


@router.get("/projects/{project_id}/budget", response_model=BudgetResponse)
async def get_project_budget(project_id: IdPath, ctx: AdminCtx) -> BudgetResponse:
    project = await ctx.visible_project(project_id)
    return await _budget(ctx, "project", project.id)


@router.put("/projects/{project_id}/budget", response_model=BudgetResponse)
async def set_project_budget(
    project_id: IdPath, body: BudgetRequest, ctx: AdminCtx
) -> BudgetResponse:
    subject = await _subject(ctx, "project", project_id)
    return await _set_budget(ctx, subject, body)


async def _set_budget(ctx: AdminCtx, subject: Subject, body: BudgetRequest) -> BudgetResponse:
    scope: Literal["tenant", "project"] = "tenant" if subject.scope == "tenant" else "project"
    limit = Decimal(body.monthly_limit) if body.monthly_limit is not None else None
    await set_budget(ctx.db, scope, subject.subject_id, limit)
    await _audit(ctx, subject, "budget.set", {"monthly_limit": body.monthly_limit})
    return await _budget(ctx, scope, subject.subject_id)
