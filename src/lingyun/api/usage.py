"""The usage report as both front doors answer it: ``/v1/usage`` for a key's own tenant and
``/admin/v1/tenants/{id}/usage`` for an admin. One shape and one query, so the two can never
disagree; each caller decides which tenant and which projects it may see."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel

from lingyun.store.db import Database
from lingyun.tenancy.usage import UsageRow, default_window, usage_report

StartQuery = Annotated[date | None, Query(description="First UTC day (inclusive).")]
EndQuery = Annotated[date | None, Query(description="Last UTC day (inclusive).")]


class UsageRowResponse(BaseModel):
    date: date
    model: str
    project_id: str
    project_name: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    total_tokens: int


class UsageResponse(BaseModel):
    object: Literal["usage"] = "usage"
    tenant_id: str
    start: date
    end: date
    data: list[UsageRowResponse]


def _row(r: UsageRow) -> UsageRowResponse:
    return UsageRowResponse(
        date=r.date, model=r.model, project_id=r.project_id, project_name=r.project_name,
        requests=r.requests, prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens, cached_tokens=r.cached_tokens,
        total_tokens=r.total_tokens,
    )  # fmt: skip


async def usage_response(
    db: Database,
    tenant_id: str,
    start: date | None,
    end: date | None,
    visible: Callable[[UsageRow], bool] = lambda _: True,
) -> UsageResponse:
    """Days ``[start, end]`` (the last 30 by default) of one tenant, rows ``visible`` only."""
    lo, hi = default_window(start, end)
    rows = [r for r in await usage_report(db, tenant_id, lo, hi) if visible(r)]
    return UsageResponse(tenant_id=tenant_id, start=lo, end=hi, data=[_row(r) for r in rows])
