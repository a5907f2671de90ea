"""Prompt logging's table (owned by ``lingyun.observability.prompt_log``).

Invariants:
- Prompt and completion text is stored only for a project whose
  ``projects.prompt_log_retention_s`` is set (by a tenant or platform admin), and only while
  it is: the request path reads the setting from the key it authenticated (``KeyInfo``).
- Every row carries ``expires_at`` (its creation plus the project's retention then); the
  purger deletes rows past it, and turning logging off deletes the project's rows at once.
- ``request_id`` is the gateway's id (the ledger's key); no foreign keys, as in usage rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Integer, String, Text, delete, text
from sqlalchemy.orm import Mapped, mapped_column

from lingyun.store.db import Database
from lingyun.store.models import Base, UTCDateTime, utcnow


class PromptRecord(Base):
    __tablename__ = "prompt_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # JSON of what the client sent (messages, prompt or input) and the text it got back.
    prompt: Mapped[str] = mapped_column(Text)
    completion: Mapped[str] = mapped_column(Text, default="")


async def erase(db: Database, *where: ColumnElement[bool]) -> int:
    """Delete prompt rows so that their text leaves the disk too, not just the table.

    SQLite keeps deleted rows in free pages and old WAL frames: ``secure_delete`` zeroes the
    pages, and a truncating checkpoint empties the WAL. (PostgreSQL keeps dead tuples until
    VACUUM reuses their space; no dump or query can read them.)
    """
    async with db.session() as s:
        if db.is_sqlite:
            await s.execute(text("PRAGMA secure_delete=ON"))
        result = await s.execute(delete(PromptRecord).where(*where))
        if db.is_sqlite:  # the pages are zeroed as the rows go: back to the cheap default
            await s.execute(text("PRAGMA secure_delete=OFF"))
        await s.commit()
    gone = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if gone:
        await db.checkpoint("TRUNCATE")
    return gone
