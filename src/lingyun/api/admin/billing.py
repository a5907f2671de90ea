"""Prices, top-ups, balances, invoices and free quotas over ``/admin/v1``.

The money itself stays in :mod:`lingyun.metering` (ledger, accounts, reports); this router
adds who may read and change what: every signed-in user sees the list prices and their
tenants' own, balances and invoices; only platform admins set prices, top up and grant
free quota. Amounts travel as decimal strings, never floats.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import IdPath, ListResponse, ModelName
from lingyun.errors import InvalidRequestError
from lingyun.metering import accounts, reports
from lingyun.metering.money import parse_money, show
from lingyun.metering.pricing import list_prices, set_price
from lingyun.store.ledger import FreeQuota, Price
from lingyun.tenancy.audit import record

router = APIRouter(tags=["admin: billing"])

# Up to a trillion, with the ledger's 9 decimal places at most (amounts are integer billionths).
Amount = Annotated[str, Field(min_length=1, max_length=22, pattern=r"^[0-9]{1,12}(\.[0-9]+)?$")]
Text = Annotated[str, Field(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
MonthPath = Annotated[str, Path(pattern=r"^[0-9]{4}-[0-9]{2}$")]


class PriceResponse(BaseModel):
    model: str
    tenant_id: str | None
    currency: str
    input_per_m: str
    cached_input_per_m: str | None
    output_per_m: str
    updated_at: datetime


class PriceSetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_per_m: Amount
    output_per_m: Amount
    cached_input_per_m: Amount | None = None
    currency: str = Field(default="CNY", pattern=r"^[A-Za-z]{3}$")
    tenant_id: str | None = Field(default=None, max_length=64)


class TopUpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount
    note: Text = ""
    idempotency_key: Text | None = None


class BalanceResponse(BaseModel):
    tenant_id: str
    balance: str
    reserved: str
    available: str
    free_only: bool


class TopUpResponse(BaseModel):
    entry_key: str
    amount: str
    created: bool
    balance: BalanceResponse


class QuotaRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: ModelName
    tokens: int = Field(gt=0, le=10**15)
    expires_at: AwareDatetime | None = None


class QuotaResponse(BaseModel):
    id: int
    model: str
    granted_tokens: int
    used_tokens: int
    reserved_tokens: int
    remaining_tokens: int
    expires_at: datetime | None


def invoice_csv(invoice: dict[str, Any]) -> str:
    """The same CSV as ``lingyun invoice --out``: one row per model line."""
    buf = io.StringIO()
    rows = invoice["lines"]
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def _money(raw: str, what: str) -> Decimal:
    try:
        return parse_money(raw, what)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param=what) from None


def _price(p: Price) -> PriceResponse:
    cached = show(p.cached_input_per_m) if p.cached_input_per_m is not None else None
    return PriceResponse(model=p.model, tenant_id=p.tenant_id or None, currency=p.currency,
                         input_per_m=show(p.input_per_m), cached_input_per_m=cached,
                         output_per_m=show(p.output_per_m), updated_at=p.updated_at)  # fmt: skip


def _balance(view: accounts.BalanceView) -> BalanceResponse:
    return BalanceResponse(tenant_id=view.tenant_id, balance=show(view.balance),
                           reserved=show(view.reserved), available=show(view.available),
                           free_only=view.free_only)  # fmt: skip


def _quota(q: FreeQuota) -> QuotaResponse:
    left = q.granted_tokens - q.used_tokens - q.reserved_tokens
    return QuotaResponse(id=q.id, model=q.model, granted_tokens=q.granted_tokens,
                         used_tokens=q.used_tokens, reserved_tokens=q.reserved_tokens,
                         remaining_tokens=left, expires_at=q.expires_at)  # fmt: skip


@router.get("/prices", response_model=ListResponse[PriceResponse])
async def prices(ctx: AdminCtx) -> ListResponse[PriceResponse]:
    """List prices, plus the caller's tenants' own (every tenant's for platform admins)."""
    p = ctx.principal
    rows = [r for r in await list_prices(ctx.db)
            if not r.tenant_id or p.can_see_tenant(r.tenant_id)]  # fmt: skip
    return ListResponse(data=[_price(r) for r in rows])


@router.put("/prices/{model:path}", response_model=PriceResponse)
async def put_price(model: str, body: PriceSetRequest, ctx: AdminCtx) -> PriceResponse:
    ctx.principal.require_platform_admin()
    if body.tenant_id:
        await ctx.visible_tenant(body.tenant_id)
    try:
        row = await set_price(
            ctx.db, model, input_per_m=_money(body.input_per_m, "input_per_m"),
            output_per_m=_money(body.output_per_m, "output_per_m"),
            cached_input_per_m=_money(body.cached_input_per_m, "cached_input_per_m")
            if body.cached_input_per_m is not None else None,
            currency=body.currency, tenant_id=body.tenant_id or "",
        )  # fmt: skip
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    async with ctx.db.session() as s:
        record(s, ctx.actor, "price.set", target_type="price", target_id=model,
               tenant_id=body.tenant_id, details=body.model_dump())  # fmt: skip
        await s.commit()
    return _price(row)


@router.get("/tenants/{tenant_id}/balance", response_model=BalanceResponse)
async def balance(tenant_id: IdPath, ctx: AdminCtx) -> BalanceResponse:
    await ctx.visible_tenant(tenant_id)
    return _balance(await accounts.balance(ctx.db, tenant_id))


@router.post("/tenants/{tenant_id}/topups", response_model=TopUpResponse, status_code=201)
async def top_up(tenant_id: IdPath, body: TopUpRequest, ctx: AdminCtx) -> TopUpResponse:
    """Credit a tenant; a repeated ``idempotency_key`` returns the first top-up."""
    ctx.principal.require_platform_admin()
    await ctx.visible_tenant(tenant_id)
    amount = _money(body.amount, "amount")
    entry, created = await accounts.credit(ctx.db, tenant_id, amount, note=body.note,
                                           idempotency_key=body.idempotency_key)  # fmt: skip
    if created:
        async with ctx.db.session() as s:
            record(s, ctx.actor, "tenant.topup", target_type="tenant", target_id=tenant_id,
                   tenant_id=tenant_id, details={"amount": show(amount),
                                                 "entry_key": entry.entry_key})  # fmt: skip
            await s.commit()
    view = await accounts.balance(ctx.db, tenant_id)
    return TopUpResponse(entry_key=entry.entry_key, amount=show(entry.amount), created=created,
                         balance=_balance(view))  # fmt: skip


@router.get("/tenants/{tenant_id}/invoices/{month}", response_model=None)
async def invoice(
    tenant_id: IdPath,
    month: MonthPath,
    ctx: AdminCtx,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Any:
    """A month's invoice, the same as ``lingyun invoice`` (``format=csv`` for its CSV)."""
    tenant = await ctx.visible_tenant(tenant_id)
    try:
        inv = await reports.invoice(ctx.db, tenant.id, tenant.name, month)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="month") from None
    if format == "csv":
        return Response(invoice_csv(inv), media_type="text/csv")
    return inv


@router.get("/tenants/{tenant_id}/free-quotas", response_model=ListResponse[QuotaResponse])
async def quotas(tenant_id: IdPath, ctx: AdminCtx) -> ListResponse[QuotaResponse]:
    await ctx.visible_tenant(tenant_id)
    return ListResponse(data=[_quota(q) for q in await accounts.list_quotas(ctx.db, tenant_id)])


@router.post("/tenants/{tenant_id}/free-quotas", response_model=QuotaResponse, status_code=201)
async def grant_quota(tenant_id: IdPath, body: QuotaRequest, ctx: AdminCtx) -> QuotaResponse:
    ctx.principal.require_platform_admin()
    await ctx.visible_tenant(tenant_id)
    try:
        q = await accounts.grant_quota(ctx.db, tenant_id, body.model, body.tokens, body.expires_at)
    except IntegrityError:
        raise InvalidRequestError(
            "This tenant already has a quota for this model and expiry.", code="conflict"
        ) from None
    async with ctx.db.session() as s:
        details = {"model": body.model, "tokens": body.tokens}
        record(s, ctx.actor, "quota.grant", target_type="tenant", target_id=tenant_id,
               tenant_id=tenant_id, details=details)  # fmt: skip
        await s.commit()
    return _quota(q)
