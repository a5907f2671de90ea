"""Upstream channels over ``/admin/v1`` (platform admins only): live state, disable, enable,
test. The CLI's ``lingyun channels`` twin; both act through ``serving/channels/service.py``.

``GET /channels`` answers this gateway's live view (state, last error, error rate over the
breaker's window, latency, transition count) of every declared channel.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from fastapi import APIRouter, Request

from lingyun.api.admin.deps import AdminCtx
from lingyun.errors import NotFoundError, ServiceUnavailableError
from lingyun.serving.channels import Channel, ChannelRegistry
from lingyun.serving.channels.probe import probe
from lingyun.serving.channels.service import set_disabled

router = APIRouter(tags=["admin: channels"])


def _registry(request: Request) -> ChannelRegistry:
    registry: ChannelRegistry | None = getattr(request.app.state, "channels", None)
    if registry is None:
        raise ServiceUnavailableError("The gateway is still starting.")
    return registry


def _channel(request: Request, deployment: str, channel: str) -> Channel:
    found = _registry(request).find(deployment, channel)
    if found is None:
        raise NotFoundError(f"No channel {channel!r} on deployment {deployment!r}.")
    return found


@router.get("/channels")
async def list_channels(request: Request, ctx: AdminCtx) -> dict[str, Any]:
    ctx.principal.require_platform_admin()
    return {"object": "list", "data": [c.snapshot() for c in _registry(request).channels()]}


@router.get("/channels/{deployment}/{channel}")
async def get_channel(
    deployment: str, channel: str, request: Request, ctx: AdminCtx
) -> dict[str, Any]:
    ctx.principal.require_platform_admin()
    return _channel(request, deployment, channel).snapshot()


async def _toggle(
    deployment: str, channel: str, request: Request, ctx: AdminCtx, *, disabled: bool
) -> dict[str, Any]:
    ctx.principal.require_platform_admin()
    found = _channel(request, deployment, channel)
    known = {(c.deployment, c.name) for c in _registry(request).channels()}
    await set_disabled(ctx.db, deployment, channel, disabled=disabled, actor=ctx.actor, known=known)
    # This gateway at once; others when their keeper reads the table.
    if disabled:
        found.breaker.disable(ctx.actor.name)
    else:
        found.breaker.enable(ctx.actor.name)
    return found.snapshot()


@router.post("/channels/{deployment}/{channel}/disable")
async def disable_channel(
    deployment: str, channel: str, request: Request, ctx: AdminCtx
) -> dict[str, Any]:
    return await _toggle(deployment, channel, request, ctx, disabled=True)


@router.post("/channels/{deployment}/{channel}/enable")
async def enable_channel(
    deployment: str, channel: str, request: Request, ctx: AdminCtx
) -> dict[str, Any]:
    return await _toggle(deployment, channel, request, ctx, disabled=False)


@router.post("/channels/{deployment}/{channel}/test")
async def test_channel(
    deployment: str, channel: str, request: Request, ctx: AdminCtx
) -> dict[str, Any]:
    """One probe request now; it reports, and does not move the breaker."""
    ctx.principal.require_platform_admin()
    found = _channel(request, deployment, channel)
    if found.replica is None:
        return {"ok": False, "latency_ms": 0.0, "status": None, "error": found.error}
    async with aiohttp.ClientSession(trust_env=False) as session:
        return (await probe(session, found.replica)).as_dict()
