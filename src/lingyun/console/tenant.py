"""Tenant pages: overview charts, usage & billing (invoice downloads, request log), models
with prices and a snippet, and the playground."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from lingyun.api.admin.billing import invoice_csv
from lingyun.console.charts import bar_chart, days
from lingyun.console.context import ConsoleRoute, Page, lang_of, page_for, render
from lingyun.console.i18n import translator
from lingyun.errors import InvalidRequestError
from lingyun.metering import accounts, reports
from lingyun.metering.money import show
from lingyun.metering.pricing import list_prices
from lingyun.store.ledger import Price
from lingyun.tenancy import request_log
from lingyun.tenancy.grants import load_snapshot
from lingyun.tenancy.usage import usage_report

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
PageDep = Annotated[Page, Depends(page_for)]
WINDOW_DAYS = 30


@router.get("")
async def overview(request: Request, page: PageDep) -> Response:
    if page.tenant is None:
        return render(request, "overview.html", page=page, charts=[], stats=None, balance=None,
                      quotas=[])  # fmt: skip
    tenant = page.tenant
    today = datetime.now(UTC).date()
    window = days(today, WINDOW_DAYS)
    requests: dict[str, float] = defaultdict(float)
    tokens: dict[str, float] = defaultdict(float)
    spend: dict[str, float] = defaultdict(float)
    by_model: dict[str, float] = defaultdict(float)
    for row in await usage_report(page.db, tenant.id, window[0], today):
        requests[row.date.isoformat()] += row.requests
        tokens[row.date.isoformat()] += row.total_tokens
        by_model[row.model] += row.total_tokens
    for line in await reports.usage(page.db, tenant.id, window[0], today):
        spend[line.day] += float(line.amount)
    labels = [d.isoformat() for d in window]
    t = translator(lang_of(request))
    charts = [
        bar_chart(t("Requests per day"), [(d, requests[d]) for d in labels]),
        bar_chart(t("Tokens per day"), [(d, tokens[d]) for d in labels]),
        bar_chart(t("Spend per day"), [(d, spend[d]) for d in labels]),
        bar_chart(t("Tokens") + " / " + t("Model"), sorted(by_model.items())),
    ]
    since = datetime.combine(window[0], datetime.min.time(), UTC)
    stats = await request_log.latency(page.db, tenant.id, since)
    balance = await accounts.balance(page.db, tenant.id)
    quotas = await accounts.list_quotas(page.db, tenant.id)
    return render(request, "overview.html", page=page, charts=charts, stats=stats,
                  balance=balance, quotas=quotas)  # fmt: skip


def _month(raw: str | None) -> str:
    month = raw or datetime.now(UTC).strftime("%Y-%m")
    try:
        reports.month_bounds(month)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="month") from None
    return month


@router.get("/usage")
async def usage_page(
    request: Request, page: PageDep, month: str = "", model: str = "", failed: str = ""
) -> Response:
    tenant = page.require_tenant()
    chosen = _month(month)
    invoice = await reports.invoice(page.db, tenant.id, tenant.name, chosen)
    balance = await accounts.balance(page.db, tenant.id)
    quotas = await accounts.list_quotas(page.db, tenant.id)
    log = await request_log.recent(page.db, tenant.id, limit=100, model=model or None,
                                   failed_only=failed == "1")  # fmt: skip
    projects = {pr.id: pr.name for pr in await page.tenancy.list_projects(tenant.id)
                if page.principal.can_see_project(tenant.id, pr.id)}  # fmt: skip
    subjects = [("tenant", tenant.id)] + [("project", pid) for pid in projects]
    budgets = await accounts.budgets(page.db, subjects, chosen)
    return render(request, "usage.html", page=page, invoice=invoice, month=chosen,
                  balance=balance, quotas=quotas, log=log, ended=request_log.ended,
                  model=model, failed=failed, budgets=budgets, projects=projects)  # fmt: skip


@router.get("/usage/invoice.{fmt}")
async def invoice_download(request: Request, fmt: str, page: PageDep, month: str = "") -> Response:
    tenant = page.require_tenant()
    chosen = _month(month)
    invoice = await reports.invoice(page.db, tenant.id, tenant.name, chosen)
    stem = f"invoice-{tenant.name}-{chosen}"
    if fmt == "json":
        body, media = json.dumps(invoice, indent=2, ensure_ascii=False), "application/json"
    elif fmt == "csv":
        body, media = invoice_csv(invoice), "text/csv"
    else:
        raise InvalidRequestError("Download as json or csv.", param="fmt")
    disposition = f'attachment; filename="{stem}.{fmt}"'
    return Response(body.encode(), media_type=media, headers={"Content-Disposition": disposition})


def _price_for(prices: list[Price], model: str, tenant_id: str) -> Price | None:
    own = [p for p in prices if p.model == model and p.tenant_id == tenant_id]
    listed = [p for p in prices if p.model == model and p.tenant_id == ""]
    found = own or listed
    return found[0] if found else None


async def granted_models(request: Request, page: Page) -> list[dict[str, Any]]:
    tenant = page.require_tenant()
    gateway = getattr(request.app.state, "gateway", None)
    deployments = gateway.catalog.deployments() if gateway is not None else []
    snapshot = await load_snapshot(page.db)
    prices = await list_prices(page.db)
    out = []
    for dep in sorted(deployments, key=lambda d: d.name):
        if not snapshot.allowed(tenant.id, None, dep.name):
            continue
        price = _price_for(prices, dep.name, tenant.id)
        out.append({
            "name": dep.name, "engine": dep.engine, "aliases": list(dep.aliases),
            "currency": price.currency if price else "",
            "input": show(price.input_per_m) if price else None,
            "cached": show(price.cached_input_per_m)
            if price and price.cached_input_per_m is not None else None,
            "output": show(price.output_per_m) if price else None,
            "input_raw": str(price.input_per_m) if price else "0",
            "cached_raw": str(price.cached_input_per_m or price.input_per_m) if price else "0",
            "output_raw": str(price.output_per_m) if price else "0",
        })  # fmt: skip
    return out


@router.get("/models")
async def models_page(request: Request, page: PageDep) -> Response:
    models = await granted_models(request, page)
    base = str(request.base_url).rstrip("/") + "/v1"
    return render(request, "models.html", page=page, models=models, base_url=base)


@router.get("/playground")
async def playground(request: Request, page: PageDep) -> Response:
    models = await granted_models(request, page)
    return render(request, "playground.html", page=page, models=models)
