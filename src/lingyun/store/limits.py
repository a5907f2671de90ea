"""Tables of the limits domain (see its module docstring once filled)."""

from __future__ import annotations
