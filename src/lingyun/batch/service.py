"""Batches: create, retrieve, list and cancel, scoped to the calling key's tenant and project.

The API and the CLI (through the API) use this one service; the runner moves the states it
owns (see ``store/batches.py``). Creation checks only what can be checked at once (the input
file, the endpoint, the window, the tenant's cap); the lines are validated by the runner in
``validating``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from lingyun.batch.files import FileStore, Owner
from lingyun.batch.lines import ENDPOINTS
from lingyun.errors import InvalidRequestError, NotFoundError, RateLimitError
from lingyun.store.batches import (
    CANCELLING,
    IN_PROGRESS,
    TERMINAL,
    VALIDATING,
    Batch,
)
from lingyun.store.db import Database
from lingyun.store.models import new_id, utcnow
from lingyun.tenancy.service import KeyInfo

_WINDOW = re.compile(r"^(\d+)(s|m|h)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}
# OpenAI offers 24 h; Model Studio up to 14 days. Seconds and minutes exist for tests.
MAX_WINDOW_S = 14 * 24 * 3600
MAX_METADATA = 16


def window_seconds(window: str) -> int:
    match = _WINDOW.match(window)
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_WINDOW_S:
        raise InvalidRequestError(
            f"Invalid completion_window {window!r}; use e.g. '24h' (at most 336h).",
            param="completion_window",
        )
    return seconds


class BatchService:
    def __init__(self, db: Database, files: FileStore, *, max_active_per_tenant: int = 100):
        self.db = db
        self.files = files
        self.max_active = max_active_per_tenant

    async def create(
        self,
        key: KeyInfo,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: dict[str, str] | None = None,
        output_expires_after_s: int | None = None,
    ) -> Batch:
        owner = Owner(key.tenant_id, key.project_id)
        if endpoint not in ENDPOINTS:
            raise InvalidRequestError(
                f"Unsupported endpoint {endpoint!r}; supported: {', '.join(sorted(ENDPOINTS))}.",
                param="endpoint",
            )
        seconds = window_seconds(completion_window)
        if metadata is not None and len(metadata) > MAX_METADATA:
            raise InvalidRequestError(
                f"metadata has {len(metadata)} pairs; at most {MAX_METADATA}.", param="metadata"
            )
        source = await self.files.get(owner, input_file_id)
        if source.purpose != "batch":
            raise InvalidRequestError(
                f"File {input_file_id} has purpose {source.purpose!r}, not 'batch'.",
                param="input_file_id",
            )
        async with self.db.session() as s:
            active = await s.scalar(
                select(func.count())
                .select_from(Batch)
                .where(Batch.tenant_id == key.tenant_id, Batch.status.not_in(TERMINAL))
            )
            if (active or 0) >= self.max_active:
                raise RateLimitError(
                    f"Your tenant has {active} unfinished batches; the limit is "
                    f"{self.max_active}. Wait for some to finish.",
                    code="batch_limit_exceeded",
                )
            now = utcnow()
            row = Batch(
                id=new_id("batch"),
                tenant_id=key.tenant_id,
                project_id=key.project_id,
                key_id=key.key_id,
                endpoint=endpoint,
                input_file_id=input_file_id,
                completion_window=completion_window,
                status=VALIDATING,
                metadata_=metadata,
                output_expires_after_s=output_expires_after_s,
                total=source.lines,
                completed=0,
                failed=0,
                input_tokens=0,
                cached_tokens=0,
                output_tokens=0,
                reasoning_tokens=0,
                created_at=now,
                expires_at=now + timedelta(seconds=seconds),
            )
            s.add(row)
            await s.commit()
        return row

    async def get(self, owner: Owner, batch_id: str) -> Batch:
        async with self.db.session() as s:
            row = await s.get(Batch, batch_id)
        if row is None or (row.tenant_id, row.project_id) != (owner.tenant_id, owner.project_id):
            raise NotFoundError(f"No such batch: {batch_id}", param="batch_id", code=None)
        return row

    async def list(
        self, owner: Owner, *, after: str | None = None, limit: int = 20
    ) -> tuple[list[Batch], bool]:
        """Newest first; ``after`` is the last id of the previous page."""
        if not 1 <= limit <= 100:
            raise InvalidRequestError("limit must be between 1 and 100.", param="limit")
        stmt = select(Batch).where(
            Batch.tenant_id == owner.tenant_id, Batch.project_id == owner.project_id
        )
        if after is not None:
            anchor = await self.get(owner, after)
            stmt = stmt.where(
                (Batch.created_at < anchor.created_at)
                | ((Batch.created_at == anchor.created_at) & (Batch.id < anchor.id))
            )
        stmt = stmt.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit + 1)
        async with self.db.session() as s:
            rows = list((await s.scalars(stmt)).all())
        return rows[:limit], len(rows) > limit

    async def cancel(self, owner: Owner, batch_id: str) -> Batch:
        row = await self.get(owner, batch_id)
        if row.status in (VALIDATING, IN_PROGRESS):
            async with self.db.session() as s:
                await s.execute(
                    update(Batch)
                    .where(Batch.id == row.id, Batch.status.in_((VALIDATING, IN_PROGRESS)))
                    .values(status=CANCELLING, cancelling_at=utcnow())
                )
                await s.commit()
            row = await self.get(owner, batch_id)
        elif row.status not in (CANCELLING,):
            raise InvalidRequestError(
                f"Batch {batch_id} is {row.status} and cannot be cancelled.",
                code="batch_not_cancellable",
            )
        return row


def owner_of(key: KeyInfo) -> Owner:
    return Owner(key.tenant_id, key.project_id)


def metadata_of(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
        for k, v in raw.items()
    ):
        raise InvalidRequestError(
            "metadata must map strings (keys ≤ 64, values ≤ 512 characters) to strings.",
            param="metadata",
        )
    return dict(raw)
