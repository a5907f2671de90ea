"""Bar charts drawn on the server as SVG: no chart library, no script, and each bar's
number is in its tooltip (``<title>``), one hover away."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    width: int
    height: int
    peak: str
    total: str

    @property
    def empty(self) -> bool:
        return not any(b.height > 0 for b in self.bars)


def days(end: date, n: int) -> list[date]:
    return [end - timedelta(days=n - 1 - i) for i in range(n)]


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def bar_chart(
    title: str, points: list[tuple[str, float]], width: int = 600, height: int = 140
) -> Chart:
    """One bar per point, scaled to the largest; labels are the points' names."""
    peak = max((v for _, v in points), default=0.0)
    slot = width / max(1, len(points))
    bars = []
    for i, (label, value) in enumerate(points):
        h = (value / peak) * (height - 4) if peak > 0 else 0.0
        bars.append(Bar(round(i * slot + 1, 2), round(height - h, 2), round(max(1.0, slot - 2), 2),
                        round(h, 2), label, _fmt(value)))  # fmt: skip
    total = sum(v for _, v in points)
    return Chart(title, bars, width, height, _fmt(peak), _fmt(total))
