"""Files and batches tables (owned by ``lingyun.batch``).

Invariants:
- A file's bytes live on disk under the file store's directory (``<data_dir>/files/<id>``);
  the row is written only after the bytes are fsynced, and deleted before them, so a row
  never points at a missing file. ``tenant_id``/``project_id`` are the uploading key's: every
  read filters on both, so another tenant's id answers 404.
- A batch moves ``validating -> in_progress -> finalizing -> completed``, ``validating ->
  failed``, ``in_progress -> expired`` (window passed) and ``validating|in_progress ->
  cancelling -> cancelled``. The API moves only ``-> cancelling``; the runner moves the rest.
- ``batch_results`` holds one row per input line that has an outcome, keyed by
  (batch_id, line): the database refuses a second outcome for a line. A line's request id
  (``<batch id>-<line>``, ``.N`` suffixes for retries that never reached an engine) is its
  ledger key, so after a crash the ledger says which unrecorded lines were already charged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lingyun.store.models import Base, UTCDateTime, utcnow

# Batch states, stored lowercase and never renamed.
VALIDATING = "validating"
FAILED = "failed"
IN_PROGRESS = "in_progress"
FINALIZING = "finalizing"
COMPLETED = "completed"
EXPIRED = "expired"
CANCELLING = "cancelling"
CANCELLED = "cancelled"
TERMINAL = frozenset({FAILED, COMPLETED, EXPIRED, CANCELLED})


class StoredFile(Base):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_owner", "tenant_id", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    # batch (uploaded input) | batch_output (written by the runner)
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_owner", "tenant_id", "project_id", "created_at"),
        Index("ix_batches_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(32))
    # The key that created the batch: its lines run as that key (grants, limits, billing).
    key_id: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=VALIDATING)
    output_file_id: Mapped[str | None] = mapped_column(String(40), default=None)
    error_file_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # Validation errors: [{"code", "line", "message", "param"}]
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, default=None)
    output_expires_after_s: Mapped[int | None] = mapped_column(Integer, default=None)
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    in_progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finalizing_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cancelling_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The gateway running it and until when (several gateways on one database share work).
    owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class BatchResult(Base):
    __tablename__ = "batch_results"

    batch_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based input line
    custom_id: Mapped[str] = mapped_column(String(512))
    request_id: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(default=False)
    # The output- or error-file line, as JSON text.
    record: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
