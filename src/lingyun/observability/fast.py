"""Cheap writes to prometheus-client metrics on the request path.

``child(metric, *labels)`` caches label lookups (``labels()`` takes a lock and builds a key
each call). ``Batch`` collects many observations of one histogram (a stream's inter-token
gaps) in plain ints and adds them in one go: prometheus-client stores buckets
non-cumulatively, so a batch is one increment per touched bucket plus one for the sum,
whichever storage (in memory or multiprocess files) is in use. If a future prometheus-client
changes those internals, ``Batch`` falls back to observing each value.
"""

from __future__ import annotations

import bisect
from typing import Any

_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    key = (id(metric), labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found


class Batch:
    """Observations of one histogram child, added at ``flush``."""

    __slots__ = ("bounds", "counts", "hist", "total", "values")

    def __init__(self, hist: Any) -> None:
        self.hist = hist
        bounds: list[float] | None = getattr(hist, "_upper_bounds", None)
        ok = hasattr(hist, "_buckets") and hasattr(hist, "_sum")
        self.bounds = list(bounds) if bounds is not None and ok else None
        self.counts = [0] * (len(self.bounds) if self.bounds is not None else 0)
        self.total = 0.0
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        if self.bounds is None:
            self.values.append(value)
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush(self) -> None:
        if self.bounds is None:
            for v in self.values:
                self.hist.observe(v)
            self.values.clear()
            return
        if not any(self.counts):
            return
        self.hist._sum.inc(self.total)
        for i, n in enumerate(self.counts):
            if n:
                self.hist._buckets[i].inc(n)
                self.counts[i] = 0
        self.total = 0.0
