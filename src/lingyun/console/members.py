"""Projects and members of the tenant shown: create projects, add users with a role.

Who may hand out what is the admin API's rule (:meth:`Principal.can_bind`): tenant admins
any tenant or project role, project admins project roles in their project, never more than
they hold.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from lingyun.console.context import ConsoleRoute, Page, check_form, page_for, redirect, render
from lingyun.errors import InvalidRequestError, PermissionDeniedError
from lingyun.tenancy.roles import PROJECT_ROLES, TENANT_ROLES, Role, not_found
from lingyun.tenancy.users import UserService

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
PageDep = Annotated[Page, Depends(page_for)]


async def _render(request: Request, page: Page, error: str | None = None) -> Response:
    tenant = page.require_tenant()
    p = page.principal
    projects = [pr for pr in await page.tenancy.list_projects(tenant.id)
                if p.can_see_project(tenant.id, pr.id)]  # fmt: skip
    names = {pr.id: pr.name for pr in projects}
    users = UserService(page.db)
    emails = {u.id: u.email for u in await users.list_users(tenant.id)}
    bindings = [b for b in await users.bindings(tenant_id=tenant.id)
                if b.project_id is None or b.project_id in names]  # fmt: skip
    roles = sorted({r.value for r in TENANT_ROLES | PROJECT_ROLES})
    return render(request, "members.html", status=400 if error else 200, page=page,
                  projects=projects, names=names, emails=emails, bindings=bindings,
                  roles=roles, error=error, is_admin=p.is_tenant_admin(tenant.id),
                  can_add=any(p.is_project_admin(tenant.id, pr.id) for pr in projects))  # fmt: skip


@router.get("/projects")
async def members_page(request: Request, page: PageDep) -> Response:
    return await _render(request, page)


@router.post("/projects")
async def create_project(request: Request, page: PageDep) -> Response:
    form = await check_form(request)
    tenant = page.require_tenant()
    page.principal.require_tenant_admin(tenant.id)
    try:
        name = form.get("name", "").strip()
        if not name or len(name) > 128:
            raise InvalidRequestError("A project needs a name of up to 128 characters.")
        await page.tenancy.create_project_in(tenant.id, name, actor=page.actor)
    except InvalidRequestError as exc:
        return await _render(request, page, error=exc.message)
    return redirect(page.url("/projects"))


@router.post("/members")
async def add_member(request: Request, page: PageDep) -> Response:
    form = await check_form(request)
    tenant = page.require_tenant()
    project_id = form.get("project") or None
    if project_id is not None:
        project = await page.tenancy.project_by_id(project_id)
        if project.tenant_id != tenant.id:
            raise not_found("project", project_id)
        page.principal.require_project_visible(tenant.id, project_id)
    try:
        role = Role(form.get("role", ""))
    except ValueError:
        return await _render(request, page, error="Pick a role.")
    if role is Role.PLATFORM_ADMIN or not page.principal.can_bind(role, tenant.id, project_id):
        raise PermissionDeniedError("You may not hand out this role here.")
    try:
        await UserService(page.db).create_user(
            form.get("email", ""), form.get("password", ""), actor=page.actor, role=role,
            tenant_id=tenant.id, project_id=project_id,
        )  # fmt: skip
    except InvalidRequestError as exc:
        return await _render(request, page, error=exc.message)
    return redirect(page.url("/projects"))
