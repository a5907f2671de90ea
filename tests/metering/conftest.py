"""A migrated database (SQLite and PostgreSQL) and a factory of tenants with money."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import pytest

from lingyun.metering import accounts
from lingyun.store.db import Database
from lingyun.tenancy.service import TenancyService


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


TenantFactory = Callable[[Decimal], Awaitable[tuple[str, str]]]


@pytest.fixture
def funded_tenant(db: Database) -> TenantFactory:
    """Creates a tenant with ``amount`` on its balance; returns (tenant_id, project_id)."""

    async def make(amount: Decimal) -> tuple[str, str]:
        svc = TenancyService(db)
        tenant = await svc.create_tenant(f"t-{secrets.token_hex(4)}")
        _, project = await svc.project(tenant.name, "default")
        if amount:
            await accounts.credit(db, tenant.id, amount)
        return tenant.id, project.id

    return make
