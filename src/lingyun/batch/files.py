"""Uploaded files: bytes on disk under the file store, a row per file, tenant-scoped reads.

The bytes are written to a temporary name, fsynced and renamed before the row is committed,
so a row never names a missing file; a delete removes the row first. Uploads for
``purpose=batch`` are validated line by line (JSON object, ``custom_id``, ``method`` POST,
``url``, ``body`` object) and refused with the first bad line's number.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from lingyun.errors import InvalidRequestError, NotFoundError, RequestTooLargeError
from lingyun.store.batches import StoredFile
from lingyun.store.db import Database
from lingyun.store.models import new_id, utcnow

logger = logging.getLogger(__name__)

PURPOSES = frozenset({"batch"})
MAX_CUSTOM_ID = 512


@dataclass(frozen=True)
class FileLimits:
    max_bytes: int = 200 * 1024 * 1024
    max_lines: int = 50_000


@dataclass(frozen=True)
class Owner:
    tenant_id: str
    project_id: str


class FileStore:
    def __init__(self, db: Database, root: Path, limits: FileLimits | None = None) -> None:
        self.db = db
        self.root = root
        self.limits = limits or FileLimits()

    def path(self, file_id: str) -> Path:
        return self.root / file_id

    async def create(
        self,
        owner: Owner,
        filename: str,
        purpose: str,
        data: bytes,
        *,
        expires_at: datetime | None = None,
        validate: bool = True,
    ) -> StoredFile:
        if purpose not in PURPOSES and validate:
            raise InvalidRequestError(
                f"Invalid purpose {purpose!r}; supported: {', '.join(sorted(PURPOSES))}.",
                param="purpose",
                code="invalid_purpose",
            )
        if len(data) > self.limits.max_bytes:
            raise RequestTooLargeError(
                f"File is {len(data)} bytes; the limit is {self.limits.max_bytes} bytes.",
                param="file",
                code="file_too_large",
            )
        lines = check_jsonl(data, self.limits.max_lines) if validate else count_lines(data)
        row = StoredFile(
            id=new_id("file"),
            tenant_id=owner.tenant_id,
            project_id=owner.project_id,
            filename=filename[:255] or "upload.jsonl",
            purpose=purpose,
            bytes=len(data),
            lines=lines,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        self._write(row.id, data)
        async with self.db.session() as s:
            s.add(row)
            await s.commit()
        return row

    def _write(self, file_id: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{file_id}.tmp"
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path(file_id))

    async def get(self, owner: Owner, file_id: str) -> StoredFile:
        async with self.db.session() as s:
            row = await s.get(StoredFile, file_id)
        if (
            row is None
            or (row.tenant_id, row.project_id) != (owner.tenant_id, owner.project_id)
            or (row.expires_at is not None and row.expires_at <= utcnow())
        ):
            raise NotFoundError(f"No such File object: {file_id}", param="file_id", code=None)
        return row

    async def content(self, owner: Owner, file_id: str) -> bytes:
        row = await self.get(owner, file_id)
        return self.path(row.id).read_bytes()

    async def list(
        self,
        owner: Owner,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10000,
    ) -> list[StoredFile]:
        stmt = select(StoredFile).where(
            StoredFile.tenant_id == owner.tenant_id, StoredFile.project_id == owner.project_id
        )
        if purpose is not None:
            stmt = stmt.where(StoredFile.purpose == purpose)
        async with self.db.session() as s:
            rows = list((await s.scalars(stmt.order_by(StoredFile.created_at.desc()))).all())
        now = utcnow()
        rows = [r for r in rows if r.expires_at is None or r.expires_at > now]
        if after is not None:
            ids = [r.id for r in rows]
            rows = rows[ids.index(after) + 1 :] if after in ids else []
        return rows[:limit]

    async def delete(self, owner: Owner, file_id: str) -> StoredFile:
        row = await self.get(owner, file_id)
        async with self.db.session() as s:
            live = await s.get(StoredFile, row.id)
            if live is not None:
                await s.delete(live)
                await s.commit()
        self.path(row.id).unlink(missing_ok=True)
        return row


def count_lines(data: bytes) -> int:
    return sum(1 for line in data.splitlines() if line.strip())


def parse_line(raw: bytes, number: int) -> dict[str, Any]:
    """One input line, checked for shape; errors name the line."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _bad(number, f"is not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise _bad(number, "is not UTF-8") from None
    if not isinstance(obj, dict):
        raise _bad(number, "must be a JSON object")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        raise _bad(number, f"needs a `custom_id` string of 1 to {MAX_CUSTOM_ID} characters")
    if obj.get("method") != "POST":
        raise _bad(number, "needs `method` POST")
    if not isinstance(obj.get("url"), str):
        raise _bad(number, "needs a `url` string such as /v1/chat/completions")
    if not isinstance(obj.get("body"), dict):
        raise _bad(number, "needs a `body` object")
    return obj


def iter_lines(data: bytes) -> list[tuple[int, bytes]]:
    """(1-based line number, bytes) of each non-blank line."""
    return [(i, line) for i, line in enumerate(data.splitlines(), 1) if line.strip()]


def check_jsonl(data: bytes, max_lines: int) -> int:
    lines = iter_lines(data)
    if not lines:
        raise InvalidRequestError("The file has no lines.", param="file", code="empty_file")
    if len(lines) > max_lines:
        raise InvalidRequestError(
            f"The file has {len(lines)} lines; the limit is {max_lines}.",
            param="file",
            code="too_many_lines",
        )
    for number, raw in lines:
        parse_line(raw, number)
    return len(lines)


def _bad(number: int, what: str) -> InvalidRequestError:
    return InvalidRequestError(f"Line {number} {what}.", param="file", code="invalid_jsonl")
