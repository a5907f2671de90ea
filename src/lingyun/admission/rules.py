"""Limit rules in the database (``lingyun limits``) and their in-memory copy in the gateway.

The CLI and the admin API write through ``LimitService``; each gateway holds every rule in a
``RuleCache`` that reloads the (small) table when the change feed's ``rate-limits`` topic
moves, so a change reaches every gateway process within a second, no request waits on the
database, and an idle gateway reads nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select

from lingyun.admission.limits import LimitRule, RuleSet, Scope
from lingyun.errors import InvalidRequestError, NotFoundError
from lingyun.store.changes import ChangeFeed
from lingyun.store.db import Database
from lingyun.store.limits import RateLimitRow
from lingyun.store.models import ApiKey, new_id, utcnow
from lingyun.tenancy.service import TenancyService

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subject:
    scope: Scope
    subject_id: str
    tenant_id: str
    label: str  # how the CLI names it back


@dataclass(frozen=True)
class LimitValues:
    """The dimensions a ``limits set`` changes; ``None`` leaves a dimension as it was."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    burst: int | None = None

    def check(self) -> None:
        for name in ("rpm", "tpm", "concurrency", "burst"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidRequestError(f"{name} must be 0 or more.", param=name)


def _rule(row: RateLimitRow) -> LimitRule:
    scope: Scope = row.scope  # type: ignore[assignment]
    return LimitRule(
        scope,
        row.subject_id,
        row.tenant_id,
        row.model,
        rpm=row.rpm,
        tpm=row.tpm,
        concurrency=row.concurrency,
        burst=row.burst,
    )


class LimitService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def subject(
        self, *, tenant: str | None = None, project: str | None = None, key: str | None = None
    ) -> Subject:
        """Resolve ``--tenant T``, ``--project P --tenant T`` or ``--key ID``."""
        if key is not None:
            if tenant is not None or project is not None:
                raise InvalidRequestError("Give --key alone, without --tenant or --project.")
            async with self.db.session() as s:
                row = await s.get(ApiKey, key)
            if row is None:
                raise NotFoundError(f"No API key {key!r}.", param="key", code="not_found")
            return Subject("key", row.id, row.tenant_id, f"key {row.id}")
        if tenant is None:
            raise InvalidRequestError("Give --tenant T, --project P --tenant T, or --key ID.")
        tenancy = TenancyService(self.db)
        if project is not None:
            ten, prj = await tenancy.project(tenant, project)
            return Subject("project", prj.id, ten.id, f"project {tenant}/{project}")
        ten = await tenancy.tenant(tenant)
        return Subject("tenant", ten.id, ten.id, f"tenant {tenant}")

    async def set(self, subject: Subject, model: str, values: LimitValues) -> LimitRule:
        values.check()
        async with self.db.session() as s:
            row = await s.scalar(
                select(RateLimitRow).where(
                    RateLimitRow.scope == subject.scope,
                    RateLimitRow.subject_id == subject.subject_id,
                    RateLimitRow.model == model,
                )
            )
            if row is None:
                row = RateLimitRow(
                    id=new_id("lim"),
                    scope=subject.scope,
                    subject_id=subject.subject_id,
                    tenant_id=subject.tenant_id,
                    model=model,
                )
                s.add(row)
            for name in ("rpm", "tpm", "concurrency", "burst"):
                value = getattr(values, name)
                if value is not None:
                    setattr(row, name, value)
            row.updated_at = utcnow()
            await s.commit()
            return _rule(row)

    async def clear(self, subject: Subject, model: str | None) -> int:
        """Delete the subject's rule for ``model`` (every rule of it when ``None``)."""
        stmt = delete(RateLimitRow).where(
            RateLimitRow.scope == subject.scope, RateLimitRow.subject_id == subject.subject_id
        )
        if model is not None:
            stmt = stmt.where(RateLimitRow.model == model)
        async with self.db.session() as s:
            result = await s.execute(stmt)
            await s.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def list(self, tenant_id: str | None = None) -> list[LimitRule]:
        stmt = select(RateLimitRow).order_by(
            RateLimitRow.tenant_id, RateLimitRow.scope, RateLimitRow.subject_id, RateLimitRow.model
        )
        if tenant_id is not None:
            stmt = stmt.where(RateLimitRow.tenant_id == tenant_id)
        async with self.db.session() as s:
            return [_rule(r) for r in (await s.scalars(stmt)).all()]


class RuleCache:
    """Every rule, in memory; ``start()`` loads them and follows the feed."""

    def __init__(
        self,
        service: LimitService,
        feed: ChangeFeed | None = None,
        on_change: Callable[[RuleSet], None] | None = None,
    ) -> None:
        self.service = service
        self.feed = feed  # None: rules reload only when load() is called
        self.on_change = on_change
        self.rules = RuleSet()

    async def load(self) -> None:
        rules = tuple(await self.service.list())
        if rules != self.rules.rules:
            self.rules = RuleSet(rules)
            if self.on_change is not None:
                self.on_change(self.rules)
            logger.info("rate limits: %d rule(s) loaded", len(rules))

    async def start(self) -> None:
        await self.load()
        if self.feed is not None:
            self.feed.subscribe("rate-limits", self.load)

    async def stop(self) -> None:
        """Nothing of its own runs: the feed calls ``load``."""
