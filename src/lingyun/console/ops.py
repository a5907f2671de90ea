"""Operator pages (platform admins only): tenants (create, top up; one tenant's settings are
in ``ops_tenant``), deployments (deploy a simulator, a local path or an upstream preset;
scale, undeploy), users and the audit log."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from lingyun.config import DeploymentConfig
from lingyun.console.context import (
    ConsoleRoute,
    Page,
    check_form,
    money,
    page_for,
    redirect,
    render,
)
from lingyun.engines.registry import ENGINES
from lingyun.engines.upstream.presets import PRESETS
from lingyun.errors import InvalidRequestError
from lingyun.metering import accounts
from lingyun.metering.money import parse_money
from lingyun.serving.deployments import DeploymentStore
from lingyun.serving.supervisor import ReplicaStatus
from lingyun.tenancy.audit import list_events, record_tenant_change
from lingyun.tenancy.users import UserService

MAX_TOPUP = Decimal(10**12)
router = APIRouter(prefix="/console/ops", route_class=ConsoleRoute, include_in_schema=False)


async def admin_page(request: Request) -> Page:
    page = await page_for(request)
    page.principal.require_platform_admin()
    return page


AdminPage = Annotated[Page, Depends(admin_page)]


@router.get("/tenants")
async def tenants_page(request: Request, page: AdminPage, error: str = "") -> Response:
    rows = []
    for tn in page.tenants:
        bal = await accounts.balance(page.db, tn.id)
        rows.append((tn, money(bal.balance), money(bal.reserved)))
    return render(request, "ops_tenants.html", page=page, rows=rows, error=error or None)


@router.post("/tenants")
async def create_tenant(request: Request, page: AdminPage) -> Response:
    form = await check_form(request)
    name = form.get("name", "").strip()
    try:
        weight = float(form.get("weight") or 1)
        if not name:
            raise InvalidRequestError("A tenant needs a name.", param="name")
        await page.tenancy.create_tenant(name, weight=weight, actor=page.actor)
    except (InvalidRequestError, ValueError) as exc:
        page.tenants = await page.tenancy.list_tenants()
        return await tenants_page(request, page, error=getattr(exc, "message", str(exc)))
    return redirect("/console/ops/tenants")


@router.post("/tenants/{tenant_id}/topup")
async def top_up(request: Request, tenant_id: str, page: AdminPage) -> Response:
    form = await check_form(request)
    tenant = await page.tenancy.tenant_by_id(tenant_id)
    try:
        amount: Decimal = parse_money(form.get("amount", ""), "amount")
        if not 0 < amount < MAX_TOPUP:
            raise InvalidRequestError(f"A top-up is more than 0 and less than {MAX_TOPUP}.")
    except (InvalidRequestError, ValueError) as exc:
        return await tenants_page(request, page, error=getattr(exc, "message", str(exc)))
    await accounts.credit(page.db, tenant.id, amount, note=f"console by {page.principal.email}",
                          idempotency_key=form.get("idempotency") or None)  # fmt: skip
    await record_tenant_change(page.db, page.actor, "tenant.topup", tenant.id,
                               {"amount": str(amount)})  # fmt: skip
    return redirect("/console/ops/tenants")


def _replicas(request: Request) -> dict[str, tuple[int, int, list[ReplicaStatus]]]:
    sup = getattr(request.app.state, "supervisor", None)
    out: dict[str, tuple[int, int, list[ReplicaStatus]]] = {}
    for d in sup.status() if sup is not None else []:
        out[d.name] = (d.healthy_replicas, len(d.replicas), list(d.replicas))
    return out


def served(request: Request) -> list[DeploymentConfig]:
    """The deployments this gateway serves now (config file and ``lingyun deploy``)."""
    gateway = getattr(request.app.state, "gateway", None)
    return list(gateway.catalog.deployments()) if gateway is not None else []


@router.get("/deployments")
async def deployments_page(request: Request, page: AdminPage, error: str = "") -> Response:
    serving = served(request)
    stored = {d.name for d in await DeploymentStore(page.db).list()}
    return render(request, "ops_deployments.html", page=page, serving=serving, stored=stored,
                  replicas=_replicas(request), error=error or None,
                  presets=sorted(PRESETS), engines=list(ENGINES))  # fmt: skip


@router.post("/deployments")
async def deploy(request: Request, page: AdminPage) -> Response:
    form = await check_form(request)
    try:
        dep = DeploymentConfig(
            name=form.get("name", "").strip(), engine=form.get("engine", "simulator"),
            model=form.get("model") or None, provider=form.get("provider") or None,
            replicas=int(form.get("replicas") or 1),
        )  # fmt: skip
    except (ValidationError, ValueError) as exc:
        return await deployments_page(request, page, error=str(exc).splitlines()[0])
    gateway = getattr(request.app.state, "gateway", None)
    if (
        gateway is not None
        and any(d.name == dep.name for d in gateway.catalog.deployments())
        and dep.name not in {d.name for d in await DeploymentStore(page.db).list()}
    ):
        return await deployments_page(request, page, error=f"{dep.name} is in the config file.")
    await DeploymentStore(page.db).save(dep)
    return redirect("/console/ops/deployments")


@router.post("/deployments/{name}/scale")
async def scale(request: Request, name: str, page: AdminPage) -> Response:
    form = await check_form(request)
    store = DeploymentStore(page.db)
    dep = next((d for d in await store.list() if d.name == name), None)
    if dep is None:
        raise InvalidRequestError(f"{name} is in the config file; scale it there.")
    try:
        scaled = DeploymentConfig.model_validate(
            {**dep.model_dump(exclude_unset=True), "replicas": int(form.get("replicas", ""))}
        )
    except (ValidationError, ValueError) as exc:
        return await deployments_page(request, page, error=str(exc).splitlines()[0])
    await store.save(scaled)
    return redirect("/console/ops/deployments")


@router.post("/deployments/{name}/undeploy")
async def undeploy(request: Request, name: str, page: AdminPage) -> Response:
    await check_form(request)
    await DeploymentStore(page.db).remove(name)
    return redirect("/console/ops/deployments")


@router.get("/users")
async def users_page(request: Request, page: AdminPage) -> Response:
    users = UserService(page.db)
    names = {tn.id: tn.name for tn in page.tenants}
    rows = []
    for user in await users.list_users():
        roles = [f"{b.role}" + (f" @ {names.get(b.tenant_id, b.tenant_id)}" if b.tenant_id else "")
                 for b in await users.bindings(user_id=user.id)]  # fmt: skip
        rows.append((user, roles))
    return render(request, "ops_users.html", page=page, rows=rows)


@router.get("/audit")
async def audit_page(request: Request, page: AdminPage) -> Response:
    events = await list_events(page.db, limit=200)
    return render(request, "ops_audit.html", page=page, events=events)
