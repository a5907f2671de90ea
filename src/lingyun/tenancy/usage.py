"""Usage reports from the ledger: one tenant's billed tokens by day x model x project.

Read from the same append-only entries as balances and invoices (one per request that
reached a client), so a tenant's usage report and its invoice agree to the token. Scoped by
tenant id in the query itself, so a caller can only ever read the tenant it was
authenticated for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Date, cast, func, select

from lingyun.errors import InvalidRequestError
from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry
from lingyun.store.models import Project

MAX_DAYS = 366
MIN_DATE, MAX_DATE = date(2000, 1, 1), date(9000, 12, 31)


@dataclass(frozen=True)
class UsageRow:
    date: date
    model: str
    project_id: str
    project_name: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def default_window(start: date | None, end: date | None) -> tuple[date, date]:
    """``[start, end]`` inclusive, in UTC days; by default the last 30 days."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and not MIN_DATE <= value <= MAX_DATE:
            raise InvalidRequestError(f"{name} must be between {MIN_DATE} and {MAX_DATE}.",
                                      param=name)  # fmt: skip
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=29)
    if start > end:
        raise InvalidRequestError("start must not be after end.", param="start")
    if (end - start).days >= MAX_DAYS:
        raise InvalidRequestError(f"At most {MAX_DAYS} days per report.", param="start")
    return start, end


async def usage_report(
    db: Database,
    tenant_id: str,
    start: date,
    end: date,
    project_id: str | None = None,
) -> list[UsageRow]:
    lo = datetime.combine(start, time.min, UTC)
    hi = datetime.combine(end + timedelta(days=1), time.min, UTC)
    e = LedgerEntry
    col = e.created_at
    day: Any = func.date(col) if db.is_sqlite else cast(func.timezone("UTC", col), Date)
    query = (
        select(
            day.label("day"),
            e.model,
            e.project_id,
            func.count(e.id),
            func.coalesce(func.sum(e.prompt_tokens), 0),
            func.coalesce(func.sum(e.completion_tokens), 0),
            func.coalesce(func.sum(e.cached_tokens), 0),
        )
        .where(e.tenant_id == tenant_id, e.kind == "usage", col >= lo, col < hi)
        .group_by(day, e.model, e.project_id)
        .order_by(day, e.model, e.project_id)
    )
    if project_id is not None:
        query = query.where(e.project_id == project_id)
    async with db.session() as s:
        rows = (await s.execute(query)).all()
        names = dict(
            (
                await s.execute(
                    select(Project.id, Project.name).where(Project.tenant_id == tenant_id)
                )
            )
            .tuples()
            .all()
        )
    out = []
    for d, model, pid, n, prompt, completion, cached in rows:
        when = d if isinstance(d, date) else date.fromisoformat(str(d))
        out.append(UsageRow(when, model, pid, names.get(pid), int(n), int(prompt),
                            int(completion), int(cached)))  # fmt: skip
    return out
