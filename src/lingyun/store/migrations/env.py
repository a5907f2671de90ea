"""Alembic environment: migrations always run on a connection handed in by lingyun."""

from __future__ import annotations

from alembic import context

import lingyun.store.tables  # noqa: F401  (registers every table)
from lingyun.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise ValueError("run migrations through lingyun (lingyun.store.migrate.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
