"""The geometry of a small line plot, drawn by the template as inline SVG.

No drawing library and no script: the page stays one file that renders offline, and every label
is user text that Jinja escapes like the rest of the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from leanlens.metrics.record import FORMATS

# distinct on white and from each other; gray is kept for the accuracy line
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
ACCURACY_COLOR = "#6b7280"

WIDTH, HEIGHT = 720, 320
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 76  # room for tick labels and the rotated version names
INSET = 24  # the first and last versions sit this far inside the plot area, clear of its edges
NAME_CHARS = 14  # longer version names are shortened on the axis (the full name is in the tooltip)


@dataclass(frozen=True)
class Line:
    """What to draw: a label, one value per version (None where missing) and a style."""

    label: str
    values: list[float | None]
    color: str
    dashed: bool = False
    kind: str = "score"  # how a value reads in its tooltip: a key of leanlens.metrics.record.FORMATS


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    tip: str  # "version: value", shown on hover


@dataclass(frozen=True)
class Series:
    label: str
    color: str
    dashed: bool
    runs: list[str]  # SVG `points` of each unbroken run: a missing value breaks the line
    points: list[Point]


@dataclass(frozen=True)
class Tick:
    at: float  # pixel position along its axis
    text: str
    tip: str = ""


@dataclass(frozen=True)
class Plot:
    width: int
    height: int
    left: int
    right: int  # x of the plot area's right edge
    top: int
    bottom: int  # y of the plot area's bottom edge
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]


def _y_range(lines: list[Line]) -> tuple[float, float]:
    """0 to 1 (shares and correlations), widened down in quarters when a value is negative."""
    values = [v for line in lines for v in line.values if v is not None]
    low = min([0.0, *values])
    return math.floor(low * 4) / 4, 1.0


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def _runs(points: list[Point | None]) -> list[str]:
    runs, current = [], []
    for p in [*points, None]:
        if p is not None:
            current.append(f"{p.x:.1f},{p.y:.1f}")
        elif current:
            runs.append(" ".join(current))
            current = []
    return runs


def line_plot(names: list[str], lines: list[Line]) -> Plot:
    """Versions evenly spaced along x, one polyline per line, values on a shared y axis."""
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    low, high = _y_range(lines)
    first, last = LEFT + INSET, right - INSET
    step = (last - first) / max(1, len(names) - 1)
    xs = [first + i * step if len(names) > 1 else (first + last) / 2 for i in range(len(names))]

    def y(v: float) -> float:
        return bottom - (v - low) / (high - low) * (bottom - TOP)

    series = []
    for line in lines:
        points = [None if v is None else Point(x, y(v), f"{name}: {FORMATS[line.kind](v)}")
                  for x, name, v in zip(xs, names, line.values)]
        series.append(Series(line.label, line.color, line.dashed, _runs(points),
                             [p for p in points if p is not None]))
    x_ticks = [Tick(x, _short(name), name) for x, name in zip(xs, names)]
    quarters = round((high - low) * 4)
    y_ticks = [Tick(y(low + k / 4), f"{low + k / 4:g}") for k in range(quarters + 1)]
    return Plot(WIDTH, HEIGHT, LEFT, right, TOP, bottom, series, x_ticks, y_ticks)
