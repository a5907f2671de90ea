"""Tables of the limits domain: rate-limit rules per tenant, project or key (and model).

Owned by ``lingyun.admission``: the CLI (``lingyun limits``) writes rules through
``admission.rules.LimitService``; gateways read them all into memory and refresh about once a
second, so admission never costs a database round trip. A rule is keyed by
``(scope, subject_id, model)``: ``scope`` is ``tenant`` | ``project`` | ``key`` (stored values,
never renamed), ``subject_id`` that tenant's, project's or key's id, ``model`` a public model
name or ``""`` for every model together. ``NULL`` in a dimension means "no limit"; counters
live in the gateway (or Redis), never here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lingyun.store.models import Base, UTCDateTime, utcnow


class RateLimitRow(Base):
    __tablename__ = "rate_limits"
    __table_args__ = (UniqueConstraint("scope", "subject_id", "model"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(128), default="")
    rpm: Mapped[int | None] = mapped_column(Integer, default=None)
    tpm: Mapped[int | None] = mapped_column(Integer, default=None)
    concurrency: Mapped[int | None] = mapped_column(Integer, default=None)
    burst: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
