"""Model grants: which models a tenant, and a project inside it, may call.

Rule: a scope (tenant, or project) with no grant rows may use every model; once it has any,
only the granted ones (``*`` grants all). A key may use a model when its tenant *and* its
project allow it, so a project's grants narrow its tenant's and can never widen them; a
key's own allow-list (``KeyInfo.models``) narrows them once more, and a model it leaves out
answers the same 404 as one never granted.

The gateway asks :class:`GrantCache` (an in-memory snapshot, no database round trip per
request). :class:`~lingyun.tenancy.runtime.TenancyRuntime` refreshes the snapshot at most
``ttl`` seconds after a change, whichever process (CLI, admin API, another gateway) made it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lingyun.errors import InvalidRequestError
from lingyun.store.access import ModelGrant
from lingyun.store.db import Database
from lingyun.store.models import Project, new_id
from lingyun.tenancy.audit import SYSTEM_ACTOR, Actor, record
from lingyun.tenancy.roles import not_found
from lingyun.tenancy.service import KeyInfo

ALL_MODELS = "*"


@dataclass(frozen=True)
class GrantSnapshot:
    """Grants by tenant (tenant-wide rows) and by project."""

    by_tenant: dict[str, frozenset[str]] = field(default_factory=dict)
    by_project: dict[str, frozenset[str]] = field(default_factory=dict)

    def allowed(self, tenant_id: str, project_id: str | None, model: str) -> bool:
        return _ok(self.by_tenant.get(tenant_id), model) and (
            project_id is None or _ok(self.by_project.get(project_id), model)
        )


def _ok(granted: frozenset[str] | None, model: str) -> bool:
    return granted is None or ALL_MODELS in granted or model in granted


class GrantCache:
    """The gateway's ``ModelAccess``: answers from the last snapshot loaded."""

    def __init__(self) -> None:
        self.snapshot = GrantSnapshot()

    def allowed(self, key: KeyInfo, model: str) -> bool:
        """Granted to the key's tenant and project, and on the key's own allow-list."""
        return key.may_call(model) and self.snapshot.allowed(key.tenant_id, key.project_id, model)


async def load_snapshot(db: Database) -> GrantSnapshot:
    async with db.session() as s:
        rows = (await s.execute(select(ModelGrant.tenant_id, ModelGrant.project_id,
                                       ModelGrant.model))).all()  # fmt: skip
    tenants: dict[str, set[str]] = defaultdict(set)
    projects: dict[str, set[str]] = defaultdict(set)
    for tenant_id, project_id, model in rows:
        if project_id is None:
            tenants[tenant_id].add(model)
        else:
            projects[project_id].add(model)
    return GrantSnapshot(
        {k: frozenset(v) for k, v in tenants.items()},
        {k: frozenset(v) for k, v in projects.items()},
    )


class GrantService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, tenant_id: str, project_id: str | None = None) -> list[ModelGrant]:
        query = select(ModelGrant).where(ModelGrant.tenant_id == tenant_id)
        if project_id is not None:
            query = query.where(ModelGrant.project_id == project_id)
        async with self.db.session() as s:
            return list((await s.scalars(query.order_by(ModelGrant.created_at))).all())

    async def grant_by_id(self, grant_id: str) -> ModelGrant:
        async with self.db.session() as s:
            row = await s.get(ModelGrant, grant_id)
        if row is None:
            raise not_found("model_grant", grant_id)
        return row

    async def grant(
        self,
        tenant_id: str,
        model: str,
        project_id: str | None = None,
        *,
        actor: Actor = SYSTEM_ACTOR,
    ) -> ModelGrant:
        """Grant ``model`` (or ``*``); granting twice returns the first grant."""
        model = model.strip()
        if not model or len(model) > 256:
            raise InvalidRequestError("model must be 1-256 characters.", param="model")
        async with self.db.session() as s:
            if project_id is not None:
                project = await s.get(Project, project_id)
                if project is None or project.tenant_id != tenant_id:
                    raise not_found("project", project_id)
            existing = await s.scalar(self._match(tenant_id, project_id, model))
            if existing is not None:
                return existing
            row = ModelGrant(id=new_id("grt"), tenant_id=tenant_id, project_id=project_id,
                             model=model)  # fmt: skip
            s.add(row)
            record(s, actor, "model_grant.create", target_type="model_grant",
                   target_id=row.id, tenant_id=tenant_id, project_id=project_id,
                   details={"model": model})  # fmt: skip
            try:
                await s.commit()
            except IntegrityError:  # a concurrent identical grant won
                await s.rollback()
                existing = await s.scalar(self._match(tenant_id, project_id, model))
                if existing is None:
                    raise
                return existing
        return row

    async def revoke(
        self,
        tenant_id: str,
        model: str,
        project_id: str | None = None,
        *,
        actor: Actor = SYSTEM_ACTOR,
    ) -> ModelGrant:
        async with self.db.session() as s:
            # All matches: NULL project ids escape the unique constraint, so two concurrent
            # tenant-wide grants of one model can both exist.
            rows = list((await s.scalars(self._match(tenant_id, project_id, model))).all())
            if not rows:
                raise not_found("model_grant", model)
            for row in rows:
                await self._delete(s, row, actor)
            await s.commit()
        return rows[0]

    async def revoke_by_id(self, grant_id: str, *, actor: Actor = SYSTEM_ACTOR) -> ModelGrant:
        async with self.db.session() as s:
            row = await s.get(ModelGrant, grant_id)
            if row is None:
                raise not_found("model_grant", grant_id)
            await self._delete(s, row, actor)
            await s.commit()
        return row

    @staticmethod
    async def _delete(s: AsyncSession, row: ModelGrant, actor: Actor) -> None:
        await s.execute(delete(ModelGrant).where(ModelGrant.id == row.id))
        record(s, actor, "model_grant.delete", target_type="model_grant", target_id=row.id,
               tenant_id=row.tenant_id, project_id=row.project_id,
               details={"model": row.model})  # fmt: skip

    @staticmethod
    def _match(tenant_id: str, project_id: str | None, model: str) -> Select[ModelGrant]:
        return select(ModelGrant).where(
            ModelGrant.tenant_id == tenant_id,
            ModelGrant.project_id.is_(None)
            if project_id is None
            else ModelGrant.project_id == project_id,
            ModelGrant.model == model,
        )
