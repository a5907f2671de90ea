"""The request log of one tenant, from ``usage_records`` (one row per finished request).

Scoped by tenant id in every query, so a caller only ever reads the tenant it was
authorised for. Rows hold counts, timings and how a request ended: never prompt text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from lingyun.store.db import Database
from lingyun.store.models import UsageRecord

MAX_ROWS = 500


@dataclass(frozen=True)
class LatencyStats:
    requests: int
    errors: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def ended(row: UsageRecord) -> str:
    """How a request ended, in the log's words."""
    if row.status_code == 499 or row.error_code == "client_disconnected":
        return "client_gone"
    if row.status_code >= 400:
        return row.error_code or "error"
    return "completed"


async def recent(
    db: Database,
    tenant_id: str,
    *,
    limit: int = 100,
    model: str | None = None,
    failed_only: bool = False,
) -> list[UsageRecord]:
    """Newest first, at most ``limit`` (capped at 500) rows."""
    query = (
        select(UsageRecord)
        .where(UsageRecord.tenant_id == tenant_id)
        .order_by(UsageRecord.id.desc())
        .limit(max(1, min(limit, MAX_ROWS)))
    )
    if model:
        query = query.where(UsageRecord.model == model)
    if failed_only:
        query = query.where(UsageRecord.status_code >= 400)
    async with db.session() as s:
        return list((await s.scalars(query)).all())


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def latency(db: Database, tenant_id: str, since: datetime) -> LatencyStats:
    """Requests, errors and TTFT quantiles since ``since`` (nearest-rank)."""
    query = select(UsageRecord.status_code, UsageRecord.ttft_ms).where(
        UsageRecord.tenant_id == tenant_id, UsageRecord.created_at >= since
    )
    async with db.session() as s:
        rows = (await s.execute(query)).all()
    ttfts = sorted(float(t) for code, t in rows if t is not None and code < 400)
    errors = sum(1 for code, _ in rows if code >= 400)
    return LatencyStats(len(rows), errors, _quantile(ttfts, 0.5), _quantile(ttfts, 0.95))
