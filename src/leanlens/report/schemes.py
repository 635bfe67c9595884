"""The PTQ-against-QAT view: versions of one parent quantized with different schemes, side by side.

The versions table lists every version in recorded order; when one float model was quantized
two ways (post-training int8 and int8-qat, say), the comparison the reader wants is those
rows next to their parent: accuracy and its change in points, agreement with the reference,
size, latency and the speed-up over the best fp32 path.
"""

from __future__ import annotations

from dataclasses import dataclass

from leanlens.audit import ModelFigures
from leanlens.metrics import Shown
from leanlens.metrics.record import number
from leanlens.report.table import Column, Header, Row, rows
from leanlens.store import Version

# the figures this view shows, by ModelFigures field, in order
FIELDS = ("scheme", "accuracy", "agreement", "bytes", "latency_ms", "fp32_speedup")
CHANGE = Shown("Δ acc.", "text", "accuracy minus the parent's, in percentage points")


@dataclass(frozen=True)
class Comparison:
    parent: str
    headers: list[Header]
    rows: list[Row]  # the parent first, then its quantized versions in recorded order


def _scheme(version: Version) -> str | None:
    return ModelFigures.from_json(version.metrics).scheme


def _accuracy_change(parent: Version):
    base = number(ModelFigures.from_json(parent.metrics).accuracy)

    def change(version: Version) -> str | None:
        accuracy = number(ModelFigures.from_json(version.metrics).accuracy)
        return None if base is None or accuracy is None else f"{100 * (accuracy - base):+.2f}"

    return change


def _columns(parent: Version) -> list[Column]:
    shown = dict(ModelFigures.shown_fields())
    cols = [Column(shown[name], lambda v, name=name: getattr(ModelFigures.from_json(v.metrics), name))
            for name in FIELDS]
    cols.insert(2, Column(CHANGE, _accuracy_change(parent)))
    return cols


def comparisons(versions: list[Version]) -> list[Comparison]:
    """One comparison per parent whose quantized children hold at least two schemes."""
    by_name = {v.name: v for v in versions}
    children: dict[str, list[Version]] = {}
    for version in versions:
        if version.parent in by_name and _scheme(version):
            children.setdefault(version.parent, []).append(version)
    found = []
    for parent, kids in children.items():
        if len({_scheme(kid) for kid in kids}) < 2:
            continue
        cols = _columns(by_name[parent])
        headers = [Header("version", "the parent first, then its quantized versions")]
        headers += [Header(col.shown.label, col.shown.tip) for col in cols]
        found.append(Comparison(parent, headers, rows([by_name[parent], *kids], cols)))
    return found
