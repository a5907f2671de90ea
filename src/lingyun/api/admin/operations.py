"""Deployments and replicas, the request log and time-series usage over ``/admin/v1``.

Deployments are the platform's (platform admins list, deploy and undeploy; the change reaches
every gateway through the stored deployments within seconds). The request log and the
series are a tenant's: visible to whoever may see the tenant, narrowed to the projects the
caller may see, and never carry prompt text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from lingyun.api.admin.deps import AdminCtx
from lingyun.api.admin.schemas import IdPath, ListResponse
from lingyun.config import DeploymentConfig
from lingyun.metering import reports
from lingyun.metering.money import ZERO, show
from lingyun.serving.deployments import DeploymentStore
from lingyun.tenancy import request_log
from lingyun.tenancy.audit import record
from lingyun.tenancy.usage import usage_report

router = APIRouter(tags=["admin: operations"])


class ReplicaResponse(BaseModel):
    id: str
    state: str
    pid: int | None
    restarts: int


class DeploymentResponse(BaseModel):
    name: str
    engine: str
    model: str | None
    replicas: int
    stored: bool  # declared through the API/CLI (undeployable), not the config file
    healthy_replicas: int
    replica_states: list[ReplicaResponse]


class RequestLogEntry(BaseModel):
    request_id: str
    created_at: datetime
    project_id: str
    key_id: str
    model: str
    status_code: int
    ended: str
    stream: bool
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    ttft_ms: float | None
    latency_ms: float


class SeriesPoint(BaseModel):
    day: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    amount: str


@router.get("/deployments", response_model=ListResponse[DeploymentResponse])
async def deployments(ctx: AdminCtx) -> ListResponse[DeploymentResponse]:
    ctx.principal.require_platform_admin()
    state = ctx.request.app.state
    gateway = getattr(state, "gateway", None)
    serving = gateway.catalog.deployments() if gateway is not None else []
    status = {d.name: d for d in state.supervisor.status()} if hasattr(state, "supervisor") else {}
    stored = {d.name for d in await DeploymentStore(ctx.db).list()}
    out = []
    for dep in serving:
        st = status.get(dep.name)
        reps = [
            ReplicaResponse(id=r.replica_id, state=r.state.value, pid=r.pid, restarts=r.restarts)
            for r in (st.replicas if st else [])
        ]
        out.append(DeploymentResponse(
            name=dep.name, engine=dep.engine, model=dep.model, replicas=dep.replicas,
            stored=dep.name in stored, healthy_replicas=st.healthy_replicas if st else 0,
            replica_states=reps,
        ))  # fmt: skip
    return ListResponse(data=out)


@router.post("/deployments", status_code=202, response_model=None)
async def deploy(body: DeploymentConfig, ctx: AdminCtx) -> dict[str, Any]:
    """Declare (or replace) a deployment; gateways start its replicas within seconds."""
    ctx.principal.require_platform_admin()
    await DeploymentStore(ctx.db).save(body)
    async with ctx.db.session() as s:
        record(s, ctx.actor, "deployment.save", target_type="deployment", target_id=body.name,
               details={"engine": body.engine, "replicas": body.replicas})  # fmt: skip
        await s.commit()
    return body.model_dump(exclude_defaults=True)


@router.delete("/deployments/{name}", status_code=204, response_class=Response)
async def undeploy(name: str, ctx: AdminCtx) -> Response:
    ctx.principal.require_platform_admin()
    await DeploymentStore(ctx.db).remove(name)
    async with ctx.db.session() as s:
        record(s, ctx.actor, "deployment.remove", target_type="deployment", target_id=name)
        await s.commit()
    return Response(status_code=204)


@router.get("/tenants/{tenant_id}/requests", response_model=ListResponse[RequestLogEntry])
async def requests(
    tenant_id: IdPath,
    ctx: AdminCtx,
    model: Annotated[str | None, Query(max_length=256, pattern=r"^[^\x00]*$")] = None,
    failed: bool = False,
    limit: Annotated[int, Query(ge=1, le=request_log.MAX_ROWS)] = 100,
) -> ListResponse[RequestLogEntry]:
    """Newest first: counts, timings and how each request ended (no prompt text)."""
    await ctx.visible_tenant(tenant_id)
    rows = await request_log.recent(ctx.db, tenant_id, limit=limit, model=model,
                                    failed_only=failed)  # fmt: skip
    p = ctx.principal
    return ListResponse(data=[
        RequestLogEntry(
            request_id=r.request_id, created_at=r.created_at, project_id=r.project_id,
            key_id=r.key_id, model=r.model, status_code=r.status_code,
            ended=request_log.ended(r), stream=r.stream, prompt_tokens=r.prompt_tokens,
            cached_tokens=r.cached_tokens, completion_tokens=r.completion_tokens,
            ttft_ms=r.ttft_ms, latency_ms=r.latency_ms,
        )
        for r in rows if p.can_see_project(tenant_id, r.project_id)
    ])  # fmt: skip


@router.get("/tenants/{tenant_id}/series", response_model=ListResponse[SeriesPoint])
async def series(
    tenant_id: IdPath,
    ctx: AdminCtx,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    model: Annotated[str | None, Query(max_length=256, pattern=r"^[^\x00]*$")] = None,
) -> ListResponse[SeriesPoint]:
    """One point per UTC day (oldest first, empty days included), for charts."""
    await ctx.visible_tenant(tenant_id)
    end = datetime.now(UTC).date()
    start = end - timedelta(days=days - 1)
    zero = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
    points: dict[str, dict[str, Any]] = {
        (start + timedelta(days=i)).isoformat(): {**zero, "amount": ZERO} for i in range(days)
    }
    for row in await usage_report(ctx.db, tenant_id, start, end):
        if model and row.model != model:
            continue
        pt = points[row.date.isoformat()]
        pt["requests"] += row.requests
        pt["prompt_tokens"] += row.prompt_tokens
        pt["completion_tokens"] += row.completion_tokens
        pt["cached_tokens"] += row.cached_tokens
    for line in await reports.usage(ctx.db, tenant_id, start, end):
        if line.day in points and (not model or line.model == model):
            points[line.day]["amount"] += line.amount
    return ListResponse(data=[
        SeriesPoint(day=day, amount=show(pt.pop("amount")), **pt) for day, pt in points.items()
    ])  # fmt: skip


__all__ = ["router"]
