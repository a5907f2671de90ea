"""Tables of the serving domain: who owns each deployment's replicas, and where they listen.

Owned by ``lingyun.serving.cluster`` (the ``Coordinator``); nothing else writes them.

- ``serving_leases``: one row per process-engine deployment. The gateway named ``owner`` (its
  ``instance_owner()``, distinct per gateway) runs the deployment's replicas until
  ``expires_at``; it renews about every second. Another gateway takes the row over only once
  it has expired (a conditional ``UPDATE``, so exactly one wins), so at most one supervisor
  owns a deployment at a time. Times are each gateway's UTC clock: keep clocks in sync (NTP)
  well within the lease length.
- ``serving_replicas``: the owner's replicas, ``(deployment, replica_id)``, with ``base_url``,
  ``model_id`` and ``healthy`` as its supervisor sees them; rewritten by the owner every
  heartbeat. Followers route only to rows whose ``owner`` still holds an unexpired lease, so
  rows a dead owner left behind are ignored until the next owner replaces them.
- ``serving_load``: per ``(gateway, deployment)``, what a follower has in flight there and
  when it last sent a request, so the owner's autoscaler counts every gateway's traffic (and
  a follower's activator can wake a deployment at zero). Rows older than a lease are ignored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from lingyun.store.models import Base, UTCDateTime, utcnow


class ServingLeaseRow(Base):
    __tablename__ = "serving_leases"

    deployment: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ServingReplicaRow(Base):
    __tablename__ = "serving_replicas"

    deployment: Mapped[str] = mapped_column(String(128), primary_key=True)
    replica_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    base_url: Mapped[str] = mapped_column(String(512))
    model_id: Mapped[str] = mapped_column(String(256))
    healthy: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))
    max_inflight: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The replica's secret sealed for the group (``serving/replica_auth.py``), for gateways
    # that route to replicas they did not start.
    secret: Mapped[str | None] = mapped_column(String(512), default=None)


class ServingLoadRow(Base):
    __tablename__ = "serving_load"

    gateway: Mapped[str] = mapped_column(String(255), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(128), primary_key=True)
    inflight: Mapped[int] = mapped_column(Integer, default=0)
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
