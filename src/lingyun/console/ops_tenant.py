"""One tenant, as a platform admin runs it: weight and free-only, rate limits, the monthly
budget, model grants and free quotas. Each form calls the service the admin API and the CLI
call (``TenancyService``, ``LimitService``, ``GrantService``, ``metering.accounts``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

from fastapi import APIRouter, Request, Response

from lingyun.admission.rules import LimitService, LimitValues, Subject
from lingyun.console.context import ConsoleRoute, Page, check_form, redirect, render
from lingyun.console.ops import AdminPage, served
from lingyun.errors import InvalidRequestError
from lingyun.metering import accounts
from lingyun.metering.money import parse_money
from lingyun.store.models import Tenant
from lingyun.tenancy.audit import record_tenant_change
from lingyun.tenancy.grants import GrantService
from lingyun.tenancy.roles import not_found

router = APIRouter(prefix="/console/ops/tenants", route_class=ConsoleRoute, include_in_schema=False)
Change = Callable[[Page, Tenant, dict[str, str]], Awaitable[None]]


def _count(raw: str, param: str) -> int | None:
    """A non-negative whole number, or None for an empty field (leave as it is)."""
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 13:
        raise InvalidRequestError(f"{param} must be a whole number.", param=param)
    return int(raw)


def _amount(raw: str) -> Decimal | None:
    """A budget amount, or None for an empty field (no budget)."""
    raw = raw.strip()
    if not raw:
        return None
    value = parse_money(raw, "The budget")
    if value >= 10**15:
        raise InvalidRequestError("The budget must be less than 10^15.", param="monthly")
    return value


@router.get("/{tenant_id}")
async def tenant_page(
    request: Request, tenant_id: str, page: AdminPage, error: str = ""
) -> Response:
    tenant = await page.tenancy.tenant_by_id(tenant_id)
    page.tenant = tenant
    month = datetime.now(UTC).strftime("%Y-%m")
    return render(
        request, "ops_tenant.html", status=400 if error else 200, page=page, tn=tenant,
        balance=await accounts.balance(page.db, tenant.id),
        limits=[r for r in await LimitService(page.db).list(tenant.id) if r.scope == "tenant"],
        budget=next(iter(await accounts.budgets(page.db, [("tenant", tenant.id)], month)), None),
        grants=[g for g in await GrantService(page.db).list(tenant.id) if g.project_id is None],
        quotas=await accounts.list_quotas(page.db, tenant.id),
        models=sorted(d.name for d in served(request)),
        error=error or None,
    )  # fmt: skip


def _change(action: str) -> Callable[[Change], Change]:
    """Register ``POST /{tenant_id}/{action}``: the CSRF check, the change, back to the page
    (or the page with the change's error)."""

    def register(fn: Change) -> Change:
        async def endpoint(request: Request, tenant_id: str, page: AdminPage) -> Response:
            form = await check_form(request)
            tenant = await page.tenancy.tenant_by_id(tenant_id)
            try:
                await fn(page, tenant, form)
            except (InvalidRequestError, ValueError) as exc:
                message = getattr(exc, "message", str(exc))
                return await tenant_page(request, tenant_id, page, error=message)
            return redirect(f"/console/ops/tenants/{tenant_id}")

        endpoint.__name__ = f"tenant_{fn.__name__}"
        router.add_api_route(f"/{{tenant_id}}/{action}", endpoint, methods=["POST"])
        return fn

    return register


@_change("settings")
async def settings(page: Page, tenant: Tenant, form: dict[str, str]) -> None:
    try:
        weight = float(form.get("weight") or tenant.weight)
    except ValueError:
        raise InvalidRequestError("The weight must be a positive number.") from None
    await page.tenancy.update_tenant_by_id(tenant.id, weight, page.actor)
    free_only = form.get("free_only") == "on"
    await accounts.set_free_only(page.db, tenant.id, free_only)
    await record_tenant_change(page.db, page.actor, "tenant.free_only", tenant.id,
                               {"free_only": free_only})  # fmt: skip


@_change("limits")
async def limits(page: Page, tenant: Tenant, form: dict[str, str]) -> None:
    subject = Subject("tenant", tenant.id, tenant.id, f"tenant {tenant.name}")
    rpm, tpm = _count(form.get("rpm", ""), "rpm"), _count(form.get("tpm", ""), "tpm")
    concurrency = _count(form.get("concurrency", ""), "concurrency")
    values = LimitValues(rpm=rpm, tpm=tpm, concurrency=concurrency)
    model = form.get("model", "").strip()
    await LimitService(page.db).set(subject, model, values)
    await record_tenant_change(page.db, page.actor, "limits.set", tenant.id,
                               {"model": model, "rpm": rpm, "tpm": tpm,
                                "concurrency": concurrency})  # fmt: skip


@_change("budget")
async def budget(page: Page, tenant: Tenant, form: dict[str, str]) -> None:
    limit = _amount(form.get("monthly", ""))
    await accounts.set_budget(page.db, "tenant", tenant.id, limit)
    shown = None if limit is None else str(limit)
    await record_tenant_change(page.db, page.actor, "budget.set", tenant.id,
                               {"monthly_limit": shown})  # fmt: skip


@_change("grants")
async def grant(page: Page, tenant: Tenant, form: dict[str, str]) -> None:
    await GrantService(page.db).grant(tenant.id, form.get("model", ""), actor=page.actor)


@_change("grants/revoke")
async def revoke_grant(page: Page, tenant: Tenant, form: dict[str, str]) -> None:
    row = await GrantService(page.db).grant_by_id(form.get("grant", ""))
    if row.tenant_id != tenant.id:  # another tenant's grant: as if it did not exist
        raise not_found("model_grant", row.id)
    await GrantService(page.db).revoke_by_id(row.id, actor=page.actor)


@_change("quotas")
async def quota(page: Page, tenant: Tenant, form: dict[str, str]) -> None:
    tokens, model = _count(form.get("tokens", ""), "tokens") or 0, form.get("model", "").strip()
    await accounts.grant_quota(page.db, tenant.id, model, tokens, None)
    await record_tenant_change(page.db, page.actor, "quota.grant", tenant.id,
                               {"model": model, "tokens": tokens})  # fmt: skip
