"""The ``/admin/v1`` router: every admin module's routes under one prefix."""

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
    mix,
    operations,
    tenants,
    users,
)

router = APIRouter(prefix="/admin/v1")
for _module in (auth, tenants, keys, users, grants, limits, audit, billing, operations, mix,
                channels):  # fmt: skip
    router.include_router(_module.router)

__all__ = ["router"]
