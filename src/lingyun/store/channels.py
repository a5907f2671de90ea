"""The ``upstream_channels`` table: one row per (deployment, channel).

Who writes what: the operator (CLI, admin API) writes ``disabled``/``disabled_by``; the gateway
that serves the deployment writes the rest (its live breaker state and statistics, a few
seconds stale at most) so the CLI can show them without calling the server. Rows of channels
no longer declared are left alone: they are history, and a disable survives a redeclaration.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from lingyun.store.models import Base, UTCDateTime, utcnow


class ChannelRow(Base):
    __tablename__ = "upstream_channels"

    deployment: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_by: Mapped[str | None] = mapped_column(String(255), default=None)
    state: Mapped[str] = mapped_column(String(16), default="closed")
    base_url: Mapped[str | None] = mapped_column(String(512), default=None)
    model: Mapped[str | None] = mapped_column(String(256), default=None)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    error_rate: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    last_error: Mapped[str | None] = mapped_column(String(1000), default=None)
    transitions: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
