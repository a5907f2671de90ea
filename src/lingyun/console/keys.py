"""API keys page: create (the secret shown once, optionally narrowed to some granted
models), list with last use and allow-list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from lingyun.console.context import ConsoleRoute, Page, check_form, page_for, redirect, render
from lingyun.console.tenant import granted_models
from lingyun.errors import InvalidRequestError, PermissionDeniedError
from lingyun.store.models import ApiKey, utcnow
from lingyun.tenancy.roles import not_found
from lingyun.tenancy.service import CreatedKey

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
PageDep = Annotated[Page, Depends(page_for)]


def key_state(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= utcnow():
        return "expired"
    return "active"


async def _render(
    request: Request, page: Page, created: CreatedKey | None = None, error: str | None = None
) -> Response:
    tenant = page.require_tenant()
    p = page.principal
    keys = [k for k in await page.tenancy.list_keys_in(tenant.id)
            if p.can_see_project(tenant.id, k.project_id)]  # fmt: skip
    projects = [pr for pr in await page.tenancy.list_projects(tenant.id)
                if p.can_see_project(tenant.id, pr.id)]  # fmt: skip
    names = {pr.id: pr.name for pr in projects}
    usable = [pr for pr in projects if p.can_use_project(tenant.id, pr.id)]
    keys.sort(key=lambda k: k.created_at, reverse=True)
    models = [m["name"] for m in await granted_models(request, page)]
    return render(request, "keys.html", status=400 if error else 200, page=page, keys=keys,
                  project_names=names, usable=usable, created=created, error=error,
                  key_state=key_state, can_use=p.can_use_project, models=models)  # fmt: skip


@router.get("/keys")
async def keys_page(request: Request, page: PageDep) -> Response:
    return await _render(request, page)


def _expiry(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        message = "Expiry must be a date like 2027-01-31."
        raise InvalidRequestError(message, param="expires") from None
    when = datetime.combine(day, time.max, UTC)
    if when <= utcnow():
        raise InvalidRequestError("Expiry must be in the future.", param="expires")
    return when


async def _allow_list(request: Request, page: Page) -> list[str] | None:
    """The ticked models (each one this tenant is granted), or None when none is ticked."""
    ticked = [v for v in (await request.form()).getlist("models") if isinstance(v, str)]
    if not ticked:
        return None
    granted = {m["name"] for m in await granted_models(request, page)}
    unknown = sorted(set(ticked) - granted)
    if unknown:
        raise InvalidRequestError(f"Not a granted model: {unknown[0]}.", param="models")
    return ticked


@router.post("/keys")
async def create_key(request: Request, page: PageDep) -> Response:
    form = await check_form(request)
    tenant = page.require_tenant()
    project = await page.tenancy.project_by_id(form.get("project", ""))
    if project.tenant_id != tenant.id:
        raise not_found("project", project.id)
    page.principal.require_project_visible(project.tenant_id, project.id)
    if not page.principal.can_use_project(project.tenant_id, project.id):
        raise PermissionDeniedError("Viewers may not create keys.")
    try:
        expires = _expiry(form.get("expires", "").strip())
        allowed = await _allow_list(request, page)
    except InvalidRequestError as exc:
        return await _render(request, page, error=exc.message)
    name = form.get("name", "").strip()[:128]
    created = await page.tenancy.create_key_in(project, name, expires, actor=page.actor,
                                               tenant_name=tenant.name, models=allowed)  # fmt: skip
    return await _render(request, page, created=created)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, page: PageDep) -> Response:
    await check_form(request)
    key = await page.tenancy.key_by_id(key_id)
    tenant = page.require_tenant()
    if key.tenant_id != tenant.id or not page.principal.can_see_project(
        key.tenant_id, key.project_id
    ):
        raise not_found("key", key_id)
    if not page.principal.can_use_project(key.tenant_id, key.project_id):
        raise PermissionDeniedError("Viewers may not revoke keys.")
    await page.tenancy.revoke_key(key.id, actor=page.actor)
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is not None:
        gateway.authenticator.invalidate()
    return redirect(page.url("/keys"))
