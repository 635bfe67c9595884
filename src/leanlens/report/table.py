"""The versions table: one column per displayed field of the typed records, in declared order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from leanlens.audit import ModelFigures
from leanlens.metrics import ExplanationScores, Shown
from leanlens.metrics.record import formatted, number
from leanlens.store import Version

MISSING = "—"


def relative(share: float) -> str:
    """A ratio to the first version, e.g. 0.452 -> '45 %', 0.031 -> '3.1 %'."""
    pct = 100 * share
    return f"{pct:.1f} %" if pct < 10 else f"{pct:.0f} %"


@dataclass(frozen=True)
class Column:
    shown: Shown
    value: Callable[[Version], Any]  # the figure of one version, or None


def _figure(name: str) -> Callable[[Version], Any]:
    return lambda v: getattr(ModelFigures.from_json(v.metrics), name)


def _score(method: str, name: str) -> Callable[[Version], Any]:
    return lambda v: getattr(v.scores.get(method, ExplanationScores()), name)


# the method's estimate of its own numerical error over the probe samples
_ERROR = Shown("numerical error", "text", "the method's own error estimate over the probe samples: IG's "
               "completeness gap |δ| and KernelSHAP's worst standard error, relative to |f(x) − f(baseline)|; "
               "SmoothGrad's worst standard error over its noisy copies, relative to the map's largest value; "
               "or LIME's fit R²; — for a method without one")


def _error(method: str) -> Callable[[Version], Any]:
    return lambda v: v.errors[method].brief() if method in v.errors else None


def columns(method: str) -> list[Column]:
    """The model's figures, then `method`'s explanation scores and numerical error."""
    cols = [Column(shown, _figure(name)) for name, shown in ModelFigures.shown_fields()]
    cols += [Column(shown, _score(method, name)) for name, shown in ExplanationScores.shown_fields()]
    return cols + [Column(_ERROR, _error(method))]


@dataclass(frozen=True)
class Header:
    text: str
    tip: str = ""
    rowspan: int = 1
    colspan: int = 1


def headers(cols: list[Column]) -> tuple[list[Header], list[Header]]:
    """Two header rows: grouped columns share a top cell and get a sub-header."""
    top, sub = [Header("version", "name given when the version was recorded", rowspan=2)], []
    for col in cols:
        shown = col.shown
        if not shown.group:
            top.append(Header(shown.label, shown.tip, rowspan=2))
            continue
        if top[-1].text == shown.group:
            top[-1] = Header(shown.group, colspan=top[-1].colspan + 1)
        else:
            top.append(Header(shown.group))
        sub.append(Header(shown.label, shown.tip))
    return top, sub


@dataclass(frozen=True)
class Cell:
    text: str
    rel: str = ""  # share of the first version's value, or empty

    @property
    def missing(self) -> bool:
        return self.text == MISSING


@dataclass(frozen=True)
class Row:
    name: str
    tip: str  # parent and creation time, on hover
    cells: list[Cell]


def _cell(col: Column, version: Version, first: Version) -> Cell:
    value = col.value(version)
    text = formatted(value, col.shown.kind)
    if text is None:
        return Cell(MISSING)
    ref = number(col.value(first)) if col.shown.relative else None
    return Cell(text, relative(number(value) / ref) if ref else "")


def rows(versions: list[Version], cols: list[Column]) -> list[Row]:
    """One row per version, in recorded order; the first is the reference."""
    out = []
    for v in versions:
        tip = f"recorded {v.created}" + (f", derived from {v.parent}" if v.parent else "")
        out.append(Row(v.name, tip, [_cell(c, v, versions[0]) for c in cols]))
    return out
