"""The ``lora_adapters`` table: adapters added with ``lingyun adapters add`` (or the admin
API) on a running server, beside those the config file declares on a base deployment.

Written only by ``serving/adapters.py``; the gateway merges the rows into the base
deployment's ``adapters`` when it (re)loads deployments. ``name`` is a model name in the
catalog, unique across models and adapters.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from lingyun.store.models import Base, UTCDateTime, utcnow


class AdapterRow(Base):
    __tablename__ = "lora_adapters"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    base: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
