"""Tables of the access domain: users, role bindings, model grants, admin sessions and the
audit log (written by ``lingyun.tenancy``; read by the admin API, the CLI and the
gateway's grant cache).

Invariants:
- Passwords are stored only as argon2 hashes; admin session tokens only as SHA-256 hashes
  (they carry 256 random bits, like API keys).
- ``role_bindings.role`` is one of ``platform_admin``, ``tenant_admin``, ``project_admin``,
  ``member``, ``viewer`` (stored values, never renamed). ``platform_admin`` has neither
  tenant nor project; ``tenant_admin`` a tenant only; the others a tenant and optionally a
  project (tenant-wide when the project is NULL).
- ``model_grants``: once a tenant (``project_id`` NULL) or a project has any row, it may use
  only the granted models; ``model = '*'`` grants every model. A key may use a model when both
  its tenant and its project allow it.
- ``audit_events`` rows keep raw ids without foreign keys, so deleting a tenant keeps its
  history. Append-only; written in the same transaction as the change they describe.
- Per-project and per-key rate limits and budgets are not here: they live with their
  enforcers (``store/limits.py``, ``store/ledger.py``); the admin API writes them there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lingyun.store.models import Base, UTCDateTime, utcnow

ROLES = ("platform_admin", "tenant_admin", "project_admin", "member", "viewer")


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class RoleBinding(Base):
    __tablename__ = "role_bindings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[str | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True, default=None
    )
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelGrant(Base):
    __tablename__ = "model_grants"
    __table_args__ = (UniqueConstraint("tenant_id", "project_id", "model"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None
    )
    model: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AdminSession(Base):
    """A logged-in user's bearer token for ``/admin/v1``; only its SHA-256 is stored."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    # Who: "cli", "system" or a user's email (with its id when a user acted).
    actor: Mapped[str] = mapped_column(String(320))
    actor_user_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # From where: the client IP for HTTP, "cli" for the command line.
    source: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    project_id: Mapped[str | None] = mapped_column(String(32), default=None)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(320))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
