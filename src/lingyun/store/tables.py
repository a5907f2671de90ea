"""Every ORM table module, imported once so ``Base.metadata`` is complete (for Alembic).

Core tables live in ``store/models.py``; each later domain keeps its tables in its own module
here, next to the data it owns.
"""

from __future__ import annotations

from lingyun.store import (
    access,
    adapters,
    batches,
    channels,
    ledger,
    limits,
    models,
    prompts,
    revisions,
    serving,
)

__all__ = [
    "access",
    "adapters",
    "batches",
    "channels",
    "ledger",
    "limits",
    "models",
    "prompts",
    "revisions",
    "serving",
]
