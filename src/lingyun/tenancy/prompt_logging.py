"""Turning a project's prompt logging on (with a retention) or off: an admin decision, audited.

Turning it off erases the project's stored prompts at once. Changing the retention caps what
is stored: no row is kept past now plus the new retention (the purger deletes each row at its
``expires_at``). The gateway learns the setting with the key's next lookup: callers
invalidate the key cache (``keys_changed``).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from lingyun.errors import InvalidRequestError, NotFoundError
from lingyun.store.db import Database
from lingyun.store.models import Project, utcnow
from lingyun.store.prompts import PromptRecord, erase
from lingyun.tenancy.audit import SYSTEM_ACTOR, Actor, record

MAX_RETENTION = timedelta(days=366)


async def set_prompt_logging(
    db: Database, project_id: str, retention_s: int | None, actor: Actor = SYSTEM_ACTOR
) -> Project:
    """``retention_s`` seconds of prompt logging for the project, or None to turn it off."""
    if retention_s is not None and not 0 < retention_s <= MAX_RETENTION.total_seconds():
        raise InvalidRequestError(
            f"retention_seconds must be between 1 and {int(MAX_RETENTION.total_seconds())}.",
            param="retention_seconds",
        )
    async with db.session() as s:
        project = await s.get(Project, project_id)
        if project is None:
            raise NotFoundError(f"No project {project_id!r}.", param="project_id", code="not_found")
        project.prompt_log_retention_s = retention_s
        if retention_s is not None:
            cap = utcnow() + timedelta(seconds=retention_s)
            await s.execute(
                update(PromptRecord)
                .where(PromptRecord.project_id == project_id, PromptRecord.expires_at > cap)
                .values(expires_at=cap)
            )
        record(s, actor, "project.prompt_logging", target_type="project", target_id=project.id,
               tenant_id=project.tenant_id, project_id=project.id,
               details={"retention_seconds": retention_s})  # fmt: skip
        await s.commit()
    if retention_s is None:
        await erase(db, PromptRecord.project_id == project_id)
    return project


def parse_retention(text: str) -> int:
    """``90s``, ``30m``, ``12h``, ``7d`` or plain seconds, as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    spelled = text.strip().lower()
    unit = units.get(spelled[-1:])
    number = spelled[:-1] if unit is not None else spelled
    if not number.isdigit():
        raise InvalidRequestError(
            f"retention {text!r}: write a number of seconds or e.g. 90s, 30m, 12h, 7d.",
            param="retention_seconds",
        )
    return int(number) * (unit or 1)
