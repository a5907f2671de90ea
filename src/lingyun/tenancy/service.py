"""Tenants, projects and keys: the one service layer behind the CLI and the admin API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from lingyun.errors import InvalidRequestError, NotFoundError
from lingyun.store.db import Database
from lingyun.store.models import ApiKey, Project, Tenant, new_id, utcnow
from lingyun.store.outage import outage_is_503
from lingyun.tenancy.audit import SYSTEM_ACTOR, Actor, record
from lingyun.tenancy.keys import display_prefix, generate_secret, hash_secret
from lingyun.tenancy.priority import DEFAULT_PRIORITY, checked, effective

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
    # Prompt logging of the key's project: seconds its text is kept; None = not stored.
    prompt_log_retention_s: int | None = None
    # The capacity queue's band for this key's requests (tenancy/priority.py).
    priority: str = DEFAULT_PRIORITY
    # The key's model allow-list (canonical names); None: whatever its tenant is granted.
    models: frozenset[str] | None = None

    def may_call(self, model: str) -> bool:
        return self.models is None or model in self.models


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

    async def create_tenant(
        self, name: str, *, weight: float = 1.0, actor: Actor = SYSTEM_ACTOR
    ) -> Tenant:
        if not weight > 0:
            raise InvalidRequestError("weight must be a positive number.", param="weight")
        tenant = Tenant(id=new_id("ten"), name=name, weight=weight)
        async with self.db.session() as s:
            try:
                s.add(tenant)
                await s.flush()  # the tenant row must exist before its project's FK
                project = Project(id=new_id("prj"), tenant_id=tenant.id, name=DEFAULT_PROJECT)
                s.add(project)
                record(s, actor, "tenant.create", target_type="tenant", target_id=tenant.id,
                       tenant_id=tenant.id, details={"name": name, "weight": weight})  # fmt: skip
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

    async def tenant_by_id(self, tenant_id: str) -> Tenant:
        async with self.db.session() as s:
            tenant = await s.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFoundError(f"No tenant {tenant_id!r}.", param="tenant_id", code="not_found")
        return tenant

    async def update_tenant(
        self, name: str, *, weight: float | None = None, actor: Actor = SYSTEM_ACTOR
    ) -> Tenant:
        return await self.update_tenant_by_id((await self.tenant(name)).id, weight, actor)

    async def update_tenant_by_id(
        self, tenant_id: str, weight: float | None, actor: Actor = SYSTEM_ACTOR
    ) -> Tenant:
        if weight is not None and not weight > 0:
            raise InvalidRequestError("weight must be a positive number.", param="weight")
        async with self.db.session() as s:
            tenant = await s.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFoundError(
                    f"No tenant {tenant_id!r}.", param="tenant_id", code="not_found"
                )
            if weight is not None:
                tenant.weight = weight
            record(s, actor, "tenant.update", target_type="tenant", target_id=tenant.id,
                   tenant_id=tenant.id, details={"weight": weight})  # fmt: skip
            await s.commit()
        return tenant

    async def create_project(
        self, tenant_name: str, name: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> Project:
        tenant = await self.tenant(tenant_name)
        return await self.create_project_in(tenant.id, name, actor=actor)

    async def create_project_in(
        self, tenant_id: str, name: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> Project:
        project = Project(id=new_id("prj"), tenant_id=tenant_id, name=name)
        async with self.db.session() as s:
            s.add(project)
            record(s, actor, "project.create", target_type="project", target_id=project.id,
                   tenant_id=tenant_id, project_id=project.id, details={"name": name})  # fmt: skip
            try:
                await s.commit()
            except IntegrityError:
                raise InvalidRequestError(
                    f"This tenant already has a project named {name!r}.",
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

    async def project_by_id(self, project_id: str) -> Project:
        async with self.db.session() as s:
            project = await s.get(Project, project_id)
        if project is None:
            raise NotFoundError(f"No project {project_id!r}.", param="project_id", code="not_found")
        return project

    async def list_projects(self, tenant_id: str) -> list[Project]:
        async with self.db.session() as s:
            rows = await s.scalars(
                select(Project).where(Project.tenant_id == tenant_id).order_by(Project.name)
            )
            return list(rows.all())

    async def create_key(
        self,
        tenant_name: str,
        project_name: str = DEFAULT_PROJECT,
        name: str = "",
        expires_at: datetime | None = None,
        *,
        actor: Actor = SYSTEM_ACTOR,
        models: list[str] | None = None,
    ) -> CreatedKey:
        _, project = await self.project(tenant_name, project_name)
        return await self.create_key_in(
            project, name, expires_at, actor=actor, tenant_name=tenant_name, models=models
        )

    async def create_key_in(
        self,
        project: Project,
        name: str = "",
        expires_at: datetime | None = None,
        *,
        actor: Actor = SYSTEM_ACTOR,
        tenant_name: str = "",
        models: list[str] | None = None,
    ) -> CreatedKey:
        """A new key; ``models`` narrows it to those canonical names (None: all granted)."""
        if models is not None:
            models = sorted({m.strip() for m in models if m.strip()})
            if not models:
                raise InvalidRequestError("Allow at least one model, or leave it open.",
                                          param="models")  # fmt: skip
        secret = generate_secret()
        row = ApiKey(
            id=new_id("key"),
            tenant_id=project.tenant_id,
            project_id=project.id,
            name=name,
            prefix=display_prefix(secret),
            secret_hash=hash_secret(secret),
            expires_at=expires_at,
            models=models,
        )
        async with self.db.session() as s:
            s.add(row)
            expiry = expires_at.isoformat() if expires_at else None
            record(s, actor, "key.create", target_type="key", target_id=row.id,
                   tenant_id=row.tenant_id, project_id=row.project_id,
                   details={"name": name, "prefix": row.prefix, "expires_at": expiry,
                            "models": models})  # fmt: skip
            await s.commit()
        return CreatedKey(row.id, secret, row.prefix, tenant_name, project.name, name)

    async def list_keys(self, tenant_name: str) -> list[ApiKey]:
        tenant = await self.tenant(tenant_name)
        return await self.list_keys_in(tenant.id)

    async def list_keys_in(self, tenant_id: str, project_id: str | None = None) -> list[ApiKey]:
        query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
        if project_id is not None:
            query = query.where(ApiKey.project_id == project_id)
        async with self.db.session() as s:
            return list((await s.scalars(query.order_by(ApiKey.created_at))).all())

    async def key_by_id(self, key_id: str) -> ApiKey:
        async with self.db.session() as s:
            key = await s.get(ApiKey, key_id)
        if key is None:
            raise NotFoundError(f"No key {key_id!r}.", param="key_id", code="not_found")
        return key

    async def revoke_key(self, key_id: str, *, actor: Actor = SYSTEM_ACTOR) -> None:
        async with self.db.session() as s:
            key = await s.get(ApiKey, key_id)
            result = await s.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if result.rowcount == 0 or key is None:  # type: ignore[attr-defined]
                raise NotFoundError(f"No active key {key_id!r}.", param="id", code="not_found")
            record(s, actor, "key.revoke", target_type="key", target_id=key_id,
                   tenant_id=key.tenant_id, project_id=key.project_id)  # fmt: skip
            await s.commit()

    async def lookup_key(self, secret_hash: str) -> KeyInfo | None:
        """The live key with this hash, or None if unknown, revoked or expired."""
        return await self._live_key(ApiKey.secret_hash == secret_hash)

    async def live_key(self, key_id: str) -> KeyInfo | None:
        """The live key with this id (a Batch API job's key), as the gateway would see it."""
        return await self._live_key(ApiKey.id == key_id)

    async def _live_key(self, which: Any) -> KeyInfo | None:
        with outage_is_503():  # the request path: an absent database is a 503, not a 500
            return await self._live_key_row(which)

    async def _live_key_row(self, which: Any) -> KeyInfo | None:
        async with self.db.session() as s:
            row = (
                await s.execute(
                    select(
                        ApiKey,
                        Tenant.name,
                        Tenant.weight,
                        Project.name,
                        Project.prompt_log_retention_s,
                        Project.priority,
                    )
                    .join(Tenant, Tenant.id == ApiKey.tenant_id)
                    .join(Project, Project.id == ApiKey.project_id)
                    .where(which, ApiKey.revoked_at.is_(None))
                )
            ).first()
        if row is None:
            return None
        key, tenant_name, weight, project_name, retention, project_priority = row
        if key.expires_at is not None and key.expires_at <= utcnow():
            return None
        return KeyInfo(
            key.id, key.tenant_id, tenant_name, key.project_id, project_name, key.expires_at,
            weight, prompt_log_retention_s=retention,
            priority=effective(key.priority, project_priority),
            models=frozenset(key.models) if key.models is not None else None,
        )  # fmt: skip

    async def set_priority(
        self, target: type[ApiKey] | type[Project], target_id: str, priority: str | None,
        *, actor: Actor = SYSTEM_ACTOR,
    ) -> None:  # fmt: skip
        """Set (or clear, with None) a key's or a project's priority; gateways see it within
        their key cache's TTL."""
        checked(priority)
        kind = "key" if target is ApiKey else "project"
        async with self.db.session() as s:
            row: ApiKey | Project | None = (
                await s.get(ApiKey, target_id)
                if target is ApiKey
                else await s.get(Project, target_id)
            )
            if row is None:
                raise NotFoundError(f"No {kind} {target_id!r}.", param="id", code="not_found")
            row.priority = priority
            project_id = row.project_id if isinstance(row, ApiKey) else row.id
            record(s, actor, f"{kind}.priority", target_type=kind, target_id=target_id,
                   tenant_id=row.tenant_id, project_id=project_id,
                   details={"priority": priority})  # fmt: skip
            await s.commit()
