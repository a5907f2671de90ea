"""Platform-wide operator pages: upstream clouds (configured? key variable set? error rate),
prices (list and set), and the provider mix (tokens and spend by where they were served)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fastapi import APIRouter, Request, Response

from lingyun.console.context import ConsoleRoute, check_form, money, redirect, render
from lingyun.console.ops import AdminPage, served
from lingyun.engines.upstream.presets import PRESETS
from lingyun.errors import InvalidRequestError
from lingyun.metering.mix import provider_mix, served_by
from lingyun.metering.money import parse_money
from lingyun.metering.pricing import list_prices, set_price
from lingyun.serving.channels import ChannelRegistry

router = APIRouter(prefix="/console/ops", route_class=ConsoleRoute, include_in_schema=False)
MIX_DAYS = 30


@router.get("/clouds")
async def clouds_page(request: Request, page: AdminPage) -> Response:
    registry: ChannelRegistry | None = getattr(request.app.state, "channels", None)
    channels = registry.channels() if registry is not None else []
    deployments = {d.name: d for d in served(request)}
    rows = []
    for preset in PRESETS.values():
        uses = sorted(n for n, d in deployments.items() if served_by(d) == preset.name)
        mine = [c for c in channels if preset.name == (c.config.provider or getattr(
            deployments.get(c.deployment), "provider", None))]  # fmt: skip
        sent = sum(c.requests for c in mine)
        failed = sum(c.failures for c in mine)
        rows.append({
            "name": preset.name, "display": preset.display_name, "env": preset.api_key_env,
            "env_set": bool(os.environ.get(preset.api_key_env)), "deployments": uses,
            "requests": sent, "error_rate": failed / sent if sent else None,
            "states": sorted({c.state.value for c in mine}),
        })  # fmt: skip
    return render(request, "ops_clouds.html", page=page, rows=rows)


@router.get("/prices")
async def prices_page(request: Request, page: AdminPage, error: str = "") -> Response:
    names = {tn.id: tn.name for tn in page.tenants}
    prices = [
        {"model": p.model, "tenant": names.get(p.tenant_id, p.tenant_id), "currency": p.currency,
         "input": money(p.input_per_m), "output": money(p.output_per_m),
         "cached": money(p.cached_input_per_m) if p.cached_input_per_m is not None else ""}
        for p in await list_prices(page.db)
    ]  # fmt: skip
    models = sorted(d.name for d in served(request))
    return render(request, "ops_prices.html", status=400 if error else 200, page=page,
                  prices=prices, models=models, error=error or None)  # fmt: skip


def _per_m(form: dict[str, str], field: str, required: bool = True) -> Decimal | None:
    raw = form.get(field, "").strip()
    if not raw and not required:
        return None
    return parse_money(raw, f"The {field} price")


@router.post("/prices")
async def set_price_form(request: Request, page: AdminPage) -> Response:
    form = await check_form(request)
    model = form.get("model", "").strip()
    try:
        if not model:
            raise InvalidRequestError("Choose a model.", param="model")
        await set_price(page.db, model, input_per_m=_per_m(form, "input") or Decimal(0),
                        output_per_m=_per_m(form, "output") or Decimal(0),
                        cached_input_per_m=_per_m(form, "cached", required=False),
                        currency=form.get("currency", "CNY").strip() or "CNY")  # fmt: skip
    except (InvalidRequestError, ValueError) as exc:
        return await prices_page(request, page, error=getattr(exc, "message", str(exc)))
    return redirect("/console/ops/prices")


@router.get("/mix")
async def mix_page(request: Request, page: AdminPage) -> Response:
    today = datetime.now(UTC).date()
    start = today - timedelta(days=MIX_DAYS - 1)
    rows = await provider_mix(page.db, [t.id for t in page.tenants], served(request), start,
                              today)  # fmt: skip
    return render(request, "ops_mix.html", page=page, rows=rows, days=MIX_DAYS)
