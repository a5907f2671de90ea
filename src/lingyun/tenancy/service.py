"""Tenants, projects and keys: the one service layer behind the CLI and the admin API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from lingyun.errors import InvalidRequestError, NotFoundError
from lingyun.store.db import Database
from lingyun.store.models import ApiKey, Project, Tenant, new_id, utcnow
from lingyun.tenancy.keys import display_prefix, generate_secret, hash_secret

DEFAULT_PROJECT = "default"


@dataclass(frozen=True)
class KeyInfo:
    """What the gateway knows about an authenticated key (cached, no secret)."""

    key_id: str
    tenant_id: str
    tenant_name: str
    project_id: str
    project_name: str
    expires_at: datetime | None
    # The tenant's share under the fair scheduler (proportional to weight).
    tenant_weight: float = 1.0


@dataclass(frozen=True)
class CreatedKey:
    id: str
    key: str  # the secret, returned once and never stored
    prefix: str
    tenant: str
    project: str
    name: str


class TenancyService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_tenant(self, name: str) -> Tenant:
        tenant = Tenant(id=new_id("ten"), name=name)
        async with self.db.session() as s:
            try:
                s.add(tenant)
                await s.flush()  # the tenant row must exist before its project's FK
                s.add(Project(id=new_id("prj"), tenant_id=tenant.id, name=DEFAULT_PROJECT))
                await s.commit()
            except IntegrityError:
                raise InvalidRequestError(
                    f"A tenant named {name!r} already exists.", param="name", code="conflict"
                ) from None
        return tenant

    async def list_tenants(self) -> list[Tenant]:
        async with self.db.session() as s:
            return list((await s.scalars(select(Tenant).order_by(Tenant.name))).all())

    async def tenant(self, name: str) -> Tenant:
        async with self.db.session() as s:
            tenant = await s.scalar(select(Tenant).where(Tenant.name == name))
        if tenant is None:
            raise NotFoundError(f"No tenant named {name!r}.", param="tenant", code="not_found")
        return tenant

    async def update_tenant(self, name: str, *, weight: float | None = None) -> Tenant:
        if weight is not None and not weight > 0:
            raise InvalidRequestError("weight must be a positive number.", param="weight")
        tenant = await self.tenant(name)
        async with self.db.session() as s:
            tenant = await s.merge(tenant)
            if weight is not None:
                tenant.weight = weight
            await s.commit()
        return tenant

    async def create_project(self, tenant_name: str, name: str) -> Project:
        tenant = await self.tenant(tenant_name)
        project = Project(id=new_id("prj"), tenant_id=tenant.id, name=name)
        async with self.db.session() as s:
            s.add(project)
            try:
                await s.commit()
            except IntegrityError:
                raise InvalidRequestError(
                    f"Tenant {tenant_name!r} already has a project named {name!r}.",
                    param="name",
                    code="conflict",
                ) from None
        return project

    async def project(self, tenant_name: str, name: str) -> tuple[Tenant, Project]:
        tenant = await self.tenant(tenant_name)
        async with self.db.session() as s:
            project = await s.scalar(
                select(Project).where(Project.tenant_id == tenant.id, Project.name == name)
            )
        if project is None:
            raise NotFoundError(
                f"Tenant {tenant_name!r} has no project {name!r}.",
                param="project",
                code="not_found",
            )
        return tenant, project

    async def create_key(
        self,
        tenant_name: str,
        project_name: str = DEFAULT_PROJECT,
        name: str = "",
        expires_at: datetime | None = None,
    ) -> CreatedKey:
        _, project = await self.project(tenant_name, project_name)
        secret = generate_secret()
        row = ApiKey(
            id=new_id("key"),
            tenant_id=project.tenant_id,
            project_id=project.id,
            name=name,
            prefix=display_prefix(secret),
            secret_hash=hash_secret(secret),
            expires_at=expires_at,
        )
        async with self.db.session() as s:
            s.add(row)
            await s.commit()
        return CreatedKey(row.id, secret, row.prefix, tenant_name, project_name, name)

    async def list_keys(self, tenant_name: str) -> list[ApiKey]:
        tenant = await self.tenant(tenant_name)
        async with self.db.session() as s:
            rows = await s.scalars(
                select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.created_at)
            )
            return list(rows.all())

    async def revoke_key(self, key_id: str) -> None:
        async with self.db.session() as s:
            result = await s.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            await s.commit()
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFoundError(f"No active key {key_id!r}.", param="id", code="not_found")

    async def lookup_key(self, secret_hash: str) -> KeyInfo | None:
        """The live key with this hash, or None if unknown, revoked or expired."""
        async with self.db.session() as s:
            row = (
                await s.execute(
                    select(ApiKey, Tenant.name, Tenant.weight, Project.name)
                    .join(Tenant, Tenant.id == ApiKey.tenant_id)
                    .join(Project, Project.id == ApiKey.project_id)
                    .where(ApiKey.secret_hash == secret_hash, ApiKey.revoked_at.is_(None))
                )
            ).first()
        if row is None:
            return None
        key, tenant_name, weight, project_name = row
        if key.expires_at is not None and key.expires_at <= utcnow():
            return None
        return KeyInfo(
            key.id, key.tenant_id, tenant_name, key.project_id, project_name, key.expires_at, weight
        )
