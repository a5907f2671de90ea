"""The provider mix over ``/admin/v1`` (platform admins): tokens and spend of every tenant
by where they were served — self-hosted or each public cloud — as the console shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import ListResponse
from lingyun.metering.mix import provider_mix
from lingyun.metering.money import show

router = APIRouter(tags=["admin: operations"])


class ProviderMixEntry(BaseModel):
    place: str
    requests: int
    tokens: int
    amount: str
    token_share: float
    spend_share: float


@router.get("/provider-mix", response_model=ListResponse[ProviderMixEntry])
async def mix(
    ctx: AdminCtx, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> ListResponse[ProviderMixEntry]:
    """The last ``days`` UTC days, all tenants; shares are of the whole (0 when nothing)."""
    ctx.principal.require_platform_admin()
    gateway = getattr(ctx.request.app.state, "gateway", None)
    deployments = gateway.catalog.deployments() if gateway is not None else []
    tenants = [t.id for t in await ctx.tenancy.list_tenants()]
    end = datetime.now(UTC).date()
    rows = await provider_mix(ctx.db, tenants, deployments, end - timedelta(days=days - 1), end)
    return ListResponse(data=[
        ProviderMixEntry(place=r.place, requests=r.requests, tokens=r.tokens,
                         amount=show(r.amount), token_share=round(r.token_share, 6),
                         spend_share=round(r.spend_share, 6))
        for r in rows
    ])  # fmt: skip
