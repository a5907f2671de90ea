"""One batch's life on the runner: validate, run its lines, finalize; resumable at any point.

Resuming (after a crash, or on another gateway once the lease lapsed) reads the recorded
outcomes and the money path's view of the rest: a line with an outcome is done; a line
without one that was charged (a ledger entry, or a reservation not released) is never run
again and is reported as interrupted; every other line runs, under a fresh attempt id if an
earlier attempt left a released reservation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from lingyun.batch.files import FileStore, Owner
from lingyun.batch.lines import ENDPOINTS, LineOutcome, run_line
from lingyun.batch.recorder import Recorder, charged_lines, line_request_id
from lingyun.batch.validate import Line, validate
from lingyun.gateway.pipeline import Gateway
from lingyun.store.batches import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXPIRED,
    FAILED,
    FINALIZING,
    IN_PROGRESS,
    TERMINAL,
    VALIDATING,
    Batch,
    BatchResult,
)
from lingyun.store.db import Database
from lingyun.store.models import utcnow
from lingyun.tenancy.service import KeyInfo

logger = logging.getLogger(__name__)


class BatchJob:
    def __init__(
        self,
        db: Database,
        files: FileStore,
        gateway: Gateway,
        batch_id: str,
        *,
        key_of: Callable[[str], Any],
        slots: asyncio.Semaphore,
        poll_s: float = 0.5,
    ) -> None:
        self.db, self.files, self.gateway = db, files, gateway
        self.batch_id = batch_id
        self.key_of = key_of
        self.slots = slots
        self.poll_s = poll_s
        self.recorder = Recorder(db, batch_id)
        self._stop: str | None = None  # "cancel" | "expire"

    async def _load(self) -> Batch:
        async with self.db.session() as s:
            row = await s.get(Batch, self.batch_id)
        if row is None:
            raise LookupError(self.batch_id)
        return row

    async def _move(self, frm: tuple[str, ...], to: str, **values: Any) -> bool:
        async with self.db.session() as s:
            result = await s.execute(
                update(Batch)
                .where(Batch.id == self.batch_id, Batch.status.in_(frm))
                .values(status=to, **values)
            )
            await s.commit()
        return bool(getattr(result, "rowcount", 0))

    async def run(self) -> None:
        row = await self._load()
        if row.status in TERMINAL:
            return
        key: KeyInfo | None = await self.key_of(row.key_id)
        data = self.files.path(row.input_file_id).read_bytes()
        if key is None:
            await self._fail(row, "invalid_api_key", "The key that created this batch is gone.")
            return
        catalog = self.gateway.catalog if row.status == VALIDATING else None
        lines, errors = validate(data, row.endpoint, key, catalog)
        if row.status == VALIDATING:
            if errors:
                await self._move((VALIDATING,), FAILED, errors=errors, failed_at=utcnow())
                return
            await self._move((VALIDATING,), IN_PROGRESS, in_progress_at=utcnow(), total=len(lines))
            row = await self._load()
        if row.status == CANCELLING and row.in_progress_at is None:
            await self._move((CANCELLING,), CANCELLED, cancelled_at=utcnow())
            return
        if row.status in (IN_PROGRESS, CANCELLING):
            await self._execute(row, key, lines)
        await self._finalize()

    async def _fail(self, row: Batch, code: str, message: str) -> None:
        err = [{"code": code, "line": None, "message": message, "param": None}]
        await self._move(
            (VALIDATING, IN_PROGRESS, CANCELLING), FAILED, errors=err, failed_at=utcnow()
        )

    async def _execute(self, row: Batch, key: KeyInfo, lines: list[Line]) -> None:
        endpoint = ENDPOINTS[row.endpoint]
        done = await self._recorded()
        history = await charged_lines(self.db, self.batch_id)
        await self.recorder.start()
        watcher = asyncio.create_task(self._watch(), name=f"batch-watch-{self.batch_id}")
        tasks: set[asyncio.Task[None]] = set()
        unrun: list[Line] = []
        try:
            if row.status == CANCELLING:
                self._stop = "cancel"
            elif utcnow() >= row.expires_at:
                self._stop = "expire"
            for line in lines:
                if line.number in done:
                    continue
                hist = history.get(line.number)
                if hist is not None and hist.charged:
                    self._record_error(
                        line,
                        "line_interrupted",
                        "The server stopped while this "
                        "line ran; it was charged once and is not run again.",
                    )
                    continue
                if self._stop is not None:
                    unrun.append(line)
                    continue
                await self.slots.acquire()
                if self._stop is not None:
                    self.slots.release()
                    unrun.append(line)
                    continue
                attempts = hist.attempts if hist is not None else 0
                task = asyncio.create_task(self._one(key, endpoint, line, attempts))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
            logger.info("batch %s: %d lines not run (%s)", self.batch_id, len(unrun), self._stop)
            if self._stop == "expire":
                for line in unrun:
                    self._record_error(
                        line,
                        "batch_expired",
                        "This line was not run before the batch's completion window ended.",
                    )
        finally:
            watcher.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(watcher, *tasks, return_exceptions=True)
            await self.recorder.stop()

    async def _one(self, key: KeyInfo, endpoint: Any, line: Line, attempts: int) -> None:
        try:
            rid = line_request_id(self.batch_id, line.number)
            outcome, _ = await run_line(self.gateway, key, endpoint, line.body, rid, attempts)
            self._record(line, outcome)
        except Exception:
            logger.exception("batch %s line %d failed unexpectedly", self.batch_id, line.number)
            self._record_error(line, "server_error", "The server failed on this line.")
        finally:
            self.slots.release()

    async def _watch(self) -> None:
        """Notice a cancel (set by the API) or the end of the window."""
        while self._stop is None:
            await asyncio.sleep(self.poll_s)
            row = await self._load()
            if row.status == CANCELLING:
                self._stop = "cancel"
            elif utcnow() >= row.expires_at:
                self._stop = "expire"

    async def _recorded(self) -> set[int]:
        async with self.db.session() as s:
            got = await s.scalars(
                select(BatchResult.line).where(BatchResult.batch_id == self.batch_id)
            )
            return set(got.all())

    def _record(self, line: Line, outcome: LineOutcome) -> None:
        record: dict[str, Any] = {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": line.custom_id,
            "response": {
                "status_code": outcome.status_code,
                "request_id": outcome.request_id,
                "body": outcome.body,
            },
            "error": None,
        }
        if not outcome.ok:
            err = outcome.body.get("error") or {}
            record["error"] = {
                "code": err.get("code") or err.get("type"),
                "message": f"Line {line.number}: {err.get('message')}",
                "line": line.number,
            }
        self.recorder.add(
            BatchResult(
                batch_id=self.batch_id,
                line=line.number,
                custom_id=line.custom_id,
                request_id=outcome.request_id,
                ok=outcome.ok,
                record=json.dumps(record, ensure_ascii=False),
                prompt_tokens=outcome.prompt_tokens,
                cached_tokens=outcome.cached_tokens,
                completion_tokens=outcome.completion_tokens,
                reasoning_tokens=outcome.reasoning_tokens,
            )
        )

    def _record_error(self, line: Line, code: str, message: str) -> None:
        record = {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": line.custom_id,
            "response": None,
            "error": {
                "code": code,
                "message": f"Line {line.number}: {message}",
                "line": line.number,
            },
        }
        self.recorder.add(
            BatchResult(
                batch_id=self.batch_id,
                line=line.number,
                custom_id=line.custom_id,
                request_id=line_request_id(self.batch_id, line.number),
                ok=False,
                record=json.dumps(record, ensure_ascii=False),
                prompt_tokens=0,
                cached_tokens=0,
                completion_tokens=0,
                reasoning_tokens=0,
            )
        )

    async def _finalize(self) -> None:
        row = await self._load()
        if row.status in TERMINAL:
            return
        end = {"cancel": CANCELLED, "expire": EXPIRED}.get(self._stop or "", COMPLETED)
        if row.status == CANCELLING:
            end = CANCELLED
        if row.status != FINALIZING:
            await self._move((IN_PROGRESS, CANCELLING), FINALIZING, finalizing_at=utcnow())
        out_id, err_id = await self._write_outputs(row)
        stamp = {COMPLETED: "completed_at", CANCELLED: "cancelled_at", EXPIRED: "expired_at"}[end]
        await self._move(
            (FINALIZING,), end, output_file_id=out_id, error_file_id=err_id, **{stamp: utcnow()}
        )
        logger.info("batch %s %s", self.batch_id, end)

    async def _write_outputs(self, row: Batch) -> tuple[str | None, str | None]:
        async with self.db.session() as s:
            got = await s.execute(
                select(BatchResult.ok, BatchResult.record)
                .where(BatchResult.batch_id == self.batch_id)
                .order_by(BatchResult.line)
            )
            rows = got.all()
        owner = Owner(row.tenant_id, row.project_id)
        expires = None
        if row.output_expires_after_s:
            expires = row.created_at + timedelta(seconds=row.output_expires_after_s)
        ids: list[str | None] = []
        for ok, name in ((True, "output"), (False, "error")):
            body = "".join(rec + "\n" for good, rec in rows if good is ok).encode()
            if not body:
                ids.append(None)
                continue
            stored = await self.files.create(
                owner,
                f"{self.batch_id}_{name}.jsonl",
                "batch_output",
                body,
                expires_at=expires,
                validate=False,
            )
            ids.append(stored.id)
        return ids[0], ids[1]
