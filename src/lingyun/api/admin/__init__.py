"""``/admin/v1``: the control plane over HTTP (the CLI's twin; one service layer).

Log in with ``POST /admin/v1/auth/login`` and send the token as a bearer token. What a
caller may see and change is decided by :mod:`lingyun.tenancy.roles`.
"""

from __future__ import annotations

from fastapi import APIRouter

from lingyun.api.admin import (
    audit,
    auth,
    billing,
    channels,
    grants,
    keys,
    limits,
    operations,
    tenants,
    users,
)

router = APIRouter(prefix="/admin/v1")
for _module in (auth, tenants, keys, users, grants, limits, audit, billing, operations, channels):
    router.include_router(_module.router)

__all__ = ["router"]
