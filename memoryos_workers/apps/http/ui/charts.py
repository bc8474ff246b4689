"""Bar charts as plain SVG geometry for the templates: no chart library, no inline script or style (the
page's Content-Security-Policy allows neither), and every label goes through the template's escaping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float
    text: str  # the value as shown


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    title: str
    threshold_y: float | None = None  # a horizontal line (vertical charts) or x position (horizontal)


def vertical(title: str, labels: Sequence[str], values: Sequence[float], *, width: int = 560, height: int = 200,
             ) -> Chart:
    """Columns from the bottom, one per label (a histogram)."""
    top, bottom, gap = 16.0, 28.0, 6.0
    n = max(1, len(values))
    peak = max([*values, 1.0])
    slot = width / n
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = (height - top - bottom) * value / peak
        bars.append(Bar(label, value, i * slot + gap / 2, height - bottom - h, slot - gap, h, _fmt(value)))
    return Chart(width, height, bars, title)


def horizontal(title: str, labels: Sequence[str], values: Sequence[float], *, threshold: float | None = None,
               width: int = 560, row: int = 22) -> Chart:
    """Rows from the left, one per label (heat per segment), with an optional threshold line (tau)."""
    left, right = 180.0, 48.0
    peak = max([*values, threshold or 0.0, 1.0])
    span = width - left - right
    bars = [
        Bar(label, value, left, i * row + 4, span * max(0.0, value) / peak, row - 8, _fmt(value))
        for i, (label, value) in enumerate(zip(labels, values, strict=True))
    ]
    line = left + span * threshold / peak if threshold is not None else None
    return Chart(width, max(row, row * len(bars)) + 8, bars, title, line)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
