"""``GET /v1/usage``: the calling key's tenant's usage, by UTC day x model x project.

Authenticated like every ``/v1`` route (the gateway's cached key lookup); the tenant comes
from the key alone, so no parameter can point the report at another tenant.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from lingyun.api.admin import convert
from lingyun.api.admin.schemas import EndQuery, StartQuery, UsageResponse
from lingyun.gateway.pipeline import Gateway
from lingyun.tenancy.usage import default_window, usage_report

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/usage", response_model=UsageResponse)
async def get_usage(
    request: Request,
    start: StartQuery = None,
    end: EndQuery = None,
) -> UsageResponse:
    gateway: Gateway = request.app.state.gateway
    key = await gateway.authenticator.authenticate(request.headers.get("authorization"))
    lo, hi = default_window(start, end)
    rows = await usage_report(request.app.state.db, key.tenant_id, lo, hi)
    return UsageResponse(
        tenant_id=key.tenant_id, start=lo, end=hi, data=[convert.usage(r) for r in rows]
    )
