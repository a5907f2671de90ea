"""``/metrics``, ``/healthz`` and ``/readyz``.

``/metrics`` on the serve port answers a scraper that presents ``metrics_token`` as a bearer
token when one is set; without a token, loopback clients only, unless ``metrics_public`` is
on. The separate ``metrics_port`` (ops listener) answers without credentials: bind it where
only the scraper reaches. ``/healthz`` and ``/readyz`` are open: they tell nothing secret.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client.registry import Collector
from starlette.responses import Response

from lingyun.errors import AuthenticationError, PermissionDeniedError
from lingyun.observability import metrics
from lingyun.observability.health import Readiness

router = APIRouter(tags=["ops"])

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass
class Ops:
    readiness: Readiness
    collectors: list[Collector] = field(default_factory=list)
    metrics_on: bool = True
    token: str | None = None
    public: bool = False


def _ops(request: Request) -> Ops:
    ops: Ops = request.app.state.ops
    return ops


def _check_access(request: Request, ops: Ops) -> None:
    if getattr(request.app.state, "ops_listener", False):
        return
    if ops.token is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {ops.token}".encode()):
            raise AuthenticationError("/metrics needs the metrics token as a bearer token.")
        return
    host = request.client.host if request.client else ""
    if not ops.public and host not in LOOPBACK:
        raise PermissionDeniedError(
            "/metrics answers loopback clients only; set metrics_token or metrics_public."
        )


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    ops = _ops(request)
    _check_access(request, ops)
    if not ops.metrics_on:
        return Response("# metrics are off\n", media_type="text/plain")
    return Response(metrics.render(ops.collectors), media_type=metrics.CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: database, migrations, replicas (see observability/health.py)."""
    ready, checks = await _ops(request).readiness.check()
    body = {"status": "ready" if ready else "unready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)
