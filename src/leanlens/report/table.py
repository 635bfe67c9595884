"""The versions table: which metrics become which columns, and how they read."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from leanlens.store import Version

MISSING = "—"


def number(value) -> float | None:
    """A metric as a finite float, or None when absent or not a number."""
    # bool is an int subclass, but True is not a measurement
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _scaled(value: float, units: tuple[str, ...]) -> str:
    """value in the largest unit of 1000 that keeps it below 1000: '1.2 M', '617 k'."""
    if abs(value) < 999.5:  # small figures are exact; the '.0f' would round 999.5 up
        return f"{value:.0f} {units[0]}".rstrip()
    i = 0
    # compare with what '.1f' will print, so 999.96 k reads 1.0 M, not 1000.0 k
    while (i == 0 or abs(value) >= 999.95) and i < len(units) - 1:
        value /= 1000.0
        i += 1
    # a decimal helps 1.2 M but is noise in 617.0 k: three significant digits suffice
    return f"{value:.1f} {units[i]}" if abs(value) < 99.95 else f"{value:.0f} {units[i]}"


def human_count(v: float) -> str:
    """1234567 -> '1.2 M'; counts below 1000 stay exact."""
    return _scaled(v, ("", "k", "M", "G", "T"))


def human_bytes(v: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as disk and download sizes are quoted)."""
    return _scaled(v, ("B", "kB", "MB", "GB", "TB"))


def percent(v: float) -> str:
    """A 0..1 share as a percentage number, the '%' lives in the header."""
    return f"{100 * v:.1f}"


def relative(share: float) -> str:
    """A ratio to the first version, e.g. 0.452 -> '45 %', 0.031 -> '3.1 %'."""
    pct = 100 * share
    return f"{pct:.1f} %" if pct < 10 else f"{pct:.0f} %"


@dataclass(frozen=True)
class Column:
    key: str  # metric name in Version.metrics
    header: str
    fmt: Callable[[float], str]
    tip: str = ""  # hover text on the header
    group: str = ""  # shared top header, e.g. explanation similarity
    relative: bool = False  # also show the value as a % of the first version's


def columns(method: str) -> list[Column]:
    """The table's metric columns, in order; similarity keys depend on the method."""
    sim = f"explanation similarity ({method})"
    return [
        Column("accuracy", "acc. (%)", percent, "share of test samples classified correctly"),
        Column("agreement", "agree (%)", percent,
               "share of samples where this version predicts the same class as the first"),
        Column("params", "params", human_count, "number of weights", relative=True),
        Column("macs", "MACs", human_count, "multiply-accumulates per input", relative=True),
        Column("bytes", "size", human_bytes, "model size on disk", relative=True),
        Column("latency_ms", "latency (ms)", lambda v: f"{v:.2f}", "median time per batch"),
        Column("speedup", "speed-up", lambda v: f"{v:.2f}×",
               "the first version's latency divided by this one's"),
        Column(f"spearman[{method}]", "Spearman", lambda v: f"{v:.3f}",
               "rank correlation with the first version's maps, 1 = same ranking", sim),
        Column(f"top10[{method}]", "top-10 % (%)", percent,
               "share of the first version's 10 % most important pixels kept", sim),
        Column(f"pointing[{method}]", "pointing (%)", percent,
               "share of probe images whose hottest pixel lies on the object"),
    ]


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
        if not col.group:
            top.append(Header(col.header, col.tip, rowspan=2))
            continue
        if top[-1].text == col.group:
            top[-1] = Header(col.group, colspan=top[-1].colspan + 1)
        else:
            top.append(Header(col.group))
        sub.append(Header(col.header, col.tip))
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


def _share(col: Column, metrics: dict, first: dict) -> str:
    if not col.relative:
        return ""
    value, ref = number(metrics.get(col.key)), number(first.get(col.key))
    if value is not None and ref:
        return relative(value / ref)
    # audit() records the ratio itself; use it when the raw figures are missing
    ratio = number(metrics.get(f"{col.key}_ratio"))
    return relative(ratio) if ratio is not None else ""


def _cell(col: Column, metrics: dict, first: dict) -> Cell:
    value = number(metrics.get(col.key))
    if value is None:
        return Cell(MISSING)
    return Cell(col.fmt(value), _share(col, metrics, first))


def rows(versions: list[Version], cols: list[Column]) -> list[Row]:
    """One row per version, in recorded order; the first is the reference."""
    first = versions[0].metrics if versions else {}
    out = []
    for v in versions:
        tip = f"recorded {v.created}" + (f", derived from {v.parent}" if v.parent else "")
        out.append(Row(v.name, tip, [_cell(c, v.metrics, first) for c in cols]))
    return out
