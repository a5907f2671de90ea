"""Tenants, keys and limits for tests, through the service layer (a CLI process costs seconds)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from lingyun.admission.rules import LimitService, LimitValues
from lingyun.errors import InvalidRequestError
from lingyun.store.db import Database
from lingyun.tenancy.service import TenancyService
from tests.support.server import LingyunServer

T = TypeVar("T")


def new_key(server: LingyunServer, tenant: str, project: str = "default") -> tuple[str, str]:
    """(secret, key id) of a fresh key of ``tenant`` (created if missing).

    Through the service layer, not the CLI: a CLI process costs seconds on a busy machine.
    """

    async def work(db: Database) -> tuple[str, str]:
        tenancy = TenancyService(db)
        with contextlib.suppress(InvalidRequestError):
            await tenancy.create_tenant(tenant)
        if project != "default":
            with contextlib.suppress(InvalidRequestError):
                await tenancy.create_project(tenant, project)
        created = await tenancy.create_key(tenant, project)
        return created.key, created.id

    return _with_db(server.database_url, work)


def set_limits(
    server: LingyunServer,
    *,
    tenant: str | None = None,
    project: str | None = None,
    key: str | None = None,
    model: str = "",
    **values: int,
) -> None:
    async def work(db: Database) -> None:
        service = LimitService(db)
        subject = await service.subject(tenant=tenant, project=project, key=key)
        await service.set(subject, model, LimitValues(**values))

    _with_db(server.database_url, work)


def _with_db(url: str, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        db = Database(url)
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(main())
