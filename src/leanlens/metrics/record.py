"""Typed records of figures, and how each figure is shown and stored.

A record is a frozen dataclass whose displayed fields declare their label, format and
meaning once (`shown(...)`). The store keeps a record as flat JSON (`to_json`), and the
command line and the report build their columns by iterating over `shown_fields()`, so a
field added here (a deletion AUC, say) reaches every reader without touching them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from leanlens.errors import BadInput

_SHOWN = "leanlens.shown"


@dataclass(frozen=True)
class Shown:
    """How a figure reads: its column label, its format kind, and a one-line meaning."""

    label: str
    kind: str  # a key of FORMATS
    tip: str
    group: str = ""  # a shared heading, e.g. "similarity to the reference"
    relative: bool = False  # also worth reading as a share of the reference's value
    detail: bool = False  # in the report, not in the terminal's summary table


def shown(label: str, kind: str, tip: str, *, group: str = "", relative: bool = False, detail: bool = False,
          default=None):
    """A record field that is displayed; its value is None until measured."""
    return dataclasses.field(default=default, metadata={_SHOWN: Shown(label, kind, tip, group, relative, detail)})


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


FORMATS = {
    "percent": lambda v: f"{100 * v:.1f} %",
    "score": lambda v: f"{v:.3f}",
    "count": human_count,
    "bytes": human_bytes,
    "ms": lambda v: f"{v:.2f}",
    "times": lambda v: f"{v:.2f}×",
    "text": str,
}


def _fits(value, annotation: str) -> bool:
    """Whether a JSON value fits a field annotated `annotation` (a string: annotations are postponed)."""
    if "str" in annotation:
        return isinstance(value, str)
    if "int" in annotation and "float" not in annotation:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value) -> float | None:
    """A figure as a finite float, or None when absent or not a number."""
    # bool is an int subclass, but True is not a measurement
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def formatted(value, kind: str) -> str | None:
    """The figure as text, or None when it is missing or not of its kind."""
    if kind == "text":
        return value if isinstance(value, str) and value else None
    value = number(value)
    return None if value is None else FORMATS[kind](value)


class Record:
    """Mixin for frozen dataclasses of figures: JSON round trip and the displayed fields."""

    @classmethod
    def shown_fields(cls) -> list[tuple[str, Shown]]:
        """(field name, how it is shown) for each displayed field, in declaration order."""
        return [(f.name, f.metadata[_SHOWN]) for f in dataclasses.fields(cls) if _SHOWN in f.metadata]

    def to_json(self) -> dict[str, Any]:
        """Measured fields as JSON scalars; fields still None are left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The record from `to_json` output; keys this version does not know are ignored, and a
        known key whose value has the wrong type (a damaged or hand-edited store) is refused."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        for name, value in values.items():
            if value is not None and not _fits(value, fields[name].type):
                raise BadInput(f"{cls.__name__}.{name} is {value!r}, not a {fields[name].type}",
                               "the record was damaged; record the version again")
        return cls(**values)
