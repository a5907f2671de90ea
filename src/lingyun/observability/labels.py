"""Bounded label values: Prometheus keeps one series per label set, forever.

Model labels are deployment names (set by operators, never by clients); error codes come from
a small vocabulary, but upstream dialects may pass a cloud's own codes through. Each label gets
a cap on distinct values; beyond it, new values become ``other``.
"""

from __future__ import annotations

import re
import threading

OTHER = "other"
UNKNOWN = "unknown"
_SAFE = re.compile(r"^[A-Za-z0-9._:/@-]{1,128}$")


class LabelCap:
    """Admits the first ``limit`` distinct values of a label; the rest read ``other``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a label cap must be at least 1")
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value:
            return ""
        if value in self._seen:
            return value
        if not _SAFE.match(value):
            return OTHER
        with self._lock:
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(value)
        return value


MODELS = LabelCap(256)
CODES = LabelCap(64)
PROVIDERS = LabelCap(64)
