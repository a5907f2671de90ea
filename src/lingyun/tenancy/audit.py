"""The audit log: who changed what, when and from where.

Every control-plane change calls :func:`record` on the session that makes the change, so the
event commits (or rolls back) with it. Rows are append-only and keep raw ids, so a deleted
tenant's history remains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lingyun.store.access import AuditEvent
from lingyun.store.db import Database


@dataclass(frozen=True)
class Actor:
    """Who acts: ``name`` (an email, "cli" or "system"), and from where (IP or "cli")."""

    name: str
    source: str
    user_id: str | None = None


CLI_ACTOR = Actor("cli", "cli")
SYSTEM_ACTOR = Actor("system", "internal")


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    target_type: str,
    target_id: str,
    tenant_id: str | None = None,
    project_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            actor=actor.name,
            actor_user_id=actor.user_id,
            source=actor.source[:64],
            action=action,
            tenant_id=tenant_id,
            project_id=project_id,
            target_type=target_type,
            target_id=target_id,
            details=details or {},
        )
    )


async def record_tenant_change(
    db: Database, actor: Actor, action: str, tenant_id: str, details: dict[str, Any]
) -> None:
    """An event of its own, for a change whose service keeps no audit (money settings, limits
    and budgets: the admin API records those in its routes, the console here)."""
    async with db.session() as s:
        record(s, actor, action, target_type="tenant", target_id=tenant_id, tenant_id=tenant_id,
               details=details)  # fmt: skip
        await s.commit()


async def list_events(
    db: Database,
    *,
    tenant_id: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditEvent]:
    """Newest first; ``tenant_id=None`` means every event (platform admins only)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    async with db.session() as s:
        return list((await s.scalars(query)).all())
