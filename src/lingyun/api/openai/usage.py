"""``GET /v1/usage``: the calling key's tenant's usage, by UTC day x model x project.

Authenticated like every ``/v1`` route (the gateway's cached key lookup); the tenant comes
from the key alone, so no parameter can point the report at another tenant.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from lingyun.api.usage import EndQuery, StartQuery, UsageResponse, usage_response
from lingyun.gateway.pipeline import Gateway

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/usage", response_model=UsageResponse)
async def get_usage(
    request: Request,
    start: StartQuery = None,
    end: EndQuery = None,
) -> UsageResponse:
    gateway: Gateway = request.app.state.gateway
    key = await gateway.authenticator.authenticate(request.headers.get("authorization"))
    return await usage_response(request.app.state.db, key.tenant_id, start, end)
