"""``GET /health``: up or down for anyone; the deployments' details only for operators.

Load balancers and probes need no credential, so the open answer says nothing but
``{"status": "ok"}``. The details (every deployment, its engine, replica states, pids,
errors) tell an outsider what is served and how to hurt it, so ``/health?details=1`` demands
either a platform admin's session token (``POST /admin/v1/auth/login``) or the operators'
monitoring token (setting ``health_token``, env ``LINGYUN_HEALTH_TOKEN``), compared in
constant time.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request

from lingyun.errors import AuthenticationError, LingyunError, PermissionDeniedError
from lingyun.serving.supervisor import DeploymentStatus, Supervisor
from lingyun.tenancy.users import UserService

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health(request: Request, details: bool = False) -> dict[str, Any]:
    if not details:
        return {"status": "ok"}
    await _require_operator(request)
    sup: Supervisor = request.app.state.supervisor
    gateway = getattr(request.app.state, "gateway", None)
    queue = getattr(gateway, "queue", None)
    return {
        "status": "ok",
        "queue": _queue_state(queue, [d.name for d in sup.status()]),
        "deployments": [
            {
                "name": d.name,
                "engine": d.engine,
                "healthy_replicas": d.healthy_replicas,
                "replicas": len(d.replicas),
                "error": d.error,
                "replica_states": _replica_states(sup, d),
            }
            for d in sup.status()
        ],
    }


def _replica_states(sup: Supervisor, d: DeploymentStatus) -> list[dict[str, Any]]:
    # requests this gateway has on each replica now (what a test kills a busy one by)
    inflight = {r.replica_id: r.inflight for r in sup.replicas(d.name)}
    return [
        {
            "id": r.replica_id,
            "state": r.state.value,
            "pid": r.pid,
            "restarts": r.restarts,
            "inflight": inflight.get(r.replica_id, 0),
        }
        for r in d.replicas
    ]


def _queue_state(queue: Any, names: list[str]) -> dict[str, Any] | None:
    """What the fair queue holds (the gateway's ``FairQueue``; None for another queue)."""
    stats = getattr(queue, "stats", None)
    if stats is None or not hasattr(queue, "lane"):
        return None
    lanes = {}
    for name in names:
        lane = queue.lane(name)
        lanes[name] = {"active": lane.active, "waiting": lane.backlogged()}
    return {
        "queued_total": stats.queued,
        "timed_out_total": stats.timed_out,
        "deployments": lanes,
    }


async def _require_operator(request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "Health details need 'Authorization: Bearer TOKEN': a platform admin's token "
            "or the health_token setting.",
            code="invalid_token",
        )
    expected: str | None = getattr(request.app.state, "health_token", None)
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return
    try:
        principal = await UserService(request.app.state.db).authenticate(token)
    except LingyunError:
        raise AuthenticationError("Invalid token.", code="invalid_token") from None
    if not principal.is_platform_admin:
        raise PermissionDeniedError("Health details are for platform admins.")
