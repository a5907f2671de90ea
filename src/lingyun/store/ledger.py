"""Tables of the ledger domain (see its module docstring once filled)."""

from __future__ import annotations
