"""Per-project and per-key overrides (rate limits, budgets) for admission and billing.

This module stores and validates them; the admission layer (``store/limits.py``) and billing
(``store/ledger.py``) decide what they mean. Unset fields are absent from ``settings``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from lingyun.store.access import Override
from lingyun.store.db import Database
from lingyun.store.models import utcnow
from lingyun.tenancy.audit import SYSTEM_ACTOR, Actor, record

Scope = Literal["project", "key"]


class OverrideSettings(BaseModel):
    """What may be overridden; ``None`` clears a field."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=0, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=0, description="Tokens per minute.")
    max_concurrency: int | None = Field(default=None, ge=0)
    monthly_budget: str | None = Field(
        default=None,
        pattern=r"^\d{1,15}(\.\d{1,9})?$",
        description="Budget per calendar month, a decimal amount in the tenant's currency.",
    )
    models: list[str] | None = Field(default=None, max_length=256)


class OverrideService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, scope: Scope, scope_id: str) -> dict[str, Any]:
        async with self.db.session() as s:
            row = await s.scalar(
                select(Override).where(Override.scope == scope, Override.scope_id == scope_id)
            )
        return dict(row.settings) if row is not None else {}

    async def set(
        self,
        scope: Scope,
        scope_id: str,
        tenant_id: str,
        settings: OverrideSettings,
        *,
        actor: Actor = SYSTEM_ACTOR,
    ) -> dict[str, Any]:
        """Merge the fields that were sent; a field sent as ``null`` is removed."""
        sent = settings.model_dump(exclude_unset=True)
        async with self.db.session() as s:
            row = await s.scalar(
                select(Override).where(Override.scope == scope, Override.scope_id == scope_id)
            )
            if row is None:
                row = Override(scope=scope, scope_id=scope_id, tenant_id=tenant_id, settings={})
                s.add(row)
            merged = {**row.settings, **sent}
            row.settings = {k: v for k, v in merged.items() if v is not None}
            row.updated_at = utcnow()
            record(s, actor, f"{scope}.override", target_type=scope, target_id=scope_id,
                   tenant_id=tenant_id, project_id=scope_id if scope == "project" else None,
                   details=sent)  # fmt: skip
            await s.commit()
            return dict(row.settings)
