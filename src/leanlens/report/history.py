"""The history view: each version's accuracy, speed-up and similarity to the reference, in recorded order.

Similarity is read exactly as the gate (`ll.check`) reads it: the mean Spearman over the held-out
probes that contain the object (every held-out probe when the probe set has no masks). The gate
explains with a candidate model; here the candidate's maps are the ones stored with its version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# the gate's choice of compared samples, shared so the two never disagree on what is compared
from leanlens.audit.check import compared_samples
from leanlens.audit.figures import ModelFigures
from leanlens.errors import BadInput
from leanlens.metrics import spearman, top_k_overlap
from leanlens.metrics.record import formatted
from leanlens.report.lineplot import ACCURACY_COLOR, PALETTE, Line, Plot, line_plot
from leanlens.report.table import MISSING, Cell, Header, Row
from leanlens.store import Store, Version


@dataclass(frozen=True)
class Similarity:
    """One version's maps of one method against the reference's, means over the compared probes."""

    spearman: float
    top_k: float


@dataclass(frozen=True)
class Step:
    """One version in the history; a figure that was not recorded is None."""

    name: str
    accuracy: float | None
    speedup: float | None  # against the reference's fastest float32 path
    fp32_speedup: float | None  # against this version's own fastest float32 path
    similarity: dict[str, Similarity | None]  # by method; None: nothing to compare


@dataclass
class History:
    reference: str | None = None
    methods: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    samples: int = 0  # how many held-out probes each similarity is a mean over
    top_k_fraction: float = 0.1
    notes: list[str] = field(default_factory=list)  # why a figure is missing


def _methods(versions: list[Version]) -> list[str]:
    """Every recorded method, the reference's first, then in order of first appearance."""
    seen: dict[str, None] = {}
    for v in versions:
        seen.update(dict.fromkeys(v.scores))
    return list(seen)


def _compared_rows(store: Store, notes: list[str]) -> np.ndarray | None:
    """Indices into the whole probe set of the probes the gate compares, or None (with a note)."""
    try:
        probe = store.probe()
        keep = compared_samples(probe.part("held_out"), "with_object")
    except BadInput as e:
        notes.append(f"No similarity: {e.problem}.")
        return None
    return np.flatnonzero(probe.held_out)[keep]


def _similarity(reference: np.ndarray, values: np.ndarray, fraction: float) -> Similarity:
    return Similarity(float(np.mean(spearman(reference, values))),
                      float(np.mean(top_k_overlap(reference, values, fraction))))


def _method_column(store: Store, versions: list[Version], method: str, rows: np.ndarray,
                   fraction: float, notes: list[str]) -> list[Similarity | None]:
    """`method`'s similarity to the reference for every version, noting each one left out."""
    reference = versions[0]
    if method not in reference.scores:
        notes.append(f"The reference {reference.name!r} has no {method!r} explanation, "
                     f"so no version is compared on {method!r}.")
        return [None] * len(versions)
    ref = store.explanation(reference.name, method)[rows]
    column, lacking = [], []
    for v in versions:
        if method not in v.scores:
            lacking.append(v.name)
            column.append(None)
            continue
        try:
            column.append(_similarity(ref, store.explanation(v.name, method)[rows], fraction))
        except BadInput as e:
            notes.append(f"Version {v.name!r}, {method!r}: {e.problem}; not compared.")
            column.append(None)
    if lacking:
        notes.append(f"No {method!r} explanation: {', '.join(map(repr, lacking))}.")
    return column


def _figure_notes(versions: list[Version], figures: list[ModelFigures]) -> list[str]:
    notes = []
    for name, label in (("accuracy", "accuracy"), ("speedup", "speed-up vs ref."),
                        ("fp32_speedup", "speed-up vs own fp32")):
        lacking = [v.name for v, f in zip(versions, figures) if getattr(f, name) is None]
        if lacking:
            notes.append(f"No {label} recorded: {', '.join(map(repr, lacking))}.")
    return notes


def history(store: Store, versions: list[Version], *, top_k_fraction: float = 0.1) -> History:
    """Every version against the first one (the reference), per recorded method."""
    if not versions:
        return History(top_k_fraction=top_k_fraction)
    notes: list[str] = []
    methods = _methods(versions)
    rows = _compared_rows(store, notes) if methods else None
    columns = {m: [None] * len(versions) for m in methods}
    if rows is not None:
        columns = {m: _method_column(store, versions, m, rows, top_k_fraction, notes) for m in methods}
    figures = [ModelFigures.from_json(v.metrics) for v in versions]
    steps = [Step(v.name, f.accuracy, f.speedup, f.fp32_speedup, {m: columns[m][i] for m in methods})
             for i, (v, f) in enumerate(zip(versions, figures))]
    return History(versions[0].name, methods, steps, 0 if rows is None else len(rows), top_k_fraction,
                   _figure_notes(versions, figures) + notes)


# how the history reads: a table and a line plot ------------------------------------------------


def _cell(value, kind: str) -> Cell:
    return Cell(formatted(value, kind) or MISSING)


def table(h: History) -> tuple[list[Header], list[Header], list[Row]]:
    """Two header rows and one row per version: accuracy, both speed-ups, then Spearman and top-k per method."""
    top_k = f"top-{100 * h.top_k_fraction:g} %"
    top = [Header("version", rowspan=2), Header("acc.", "share of test samples classified correctly", rowspan=2),
           Header("speed-up", colspan=2)]
    sub = [Header("vs ref.", "the reference's fastest float32 latency divided by this version's"),
           Header("vs fp32", "this version's own fastest float32 latency divided by its latency")]
    for method in h.methods:
        top.append(Header(method, colspan=2))
        sub += [Header("Spearman", "mean rank correlation with the reference's maps"),
                Header(top_k, "share of the reference's most important pixels that are also this version's")]
    rows = []
    for step in h.steps:
        cells = [_cell(step.accuracy, "percent"), _cell(step.speedup, "times"), _cell(step.fp32_speedup, "times")]
        for method in h.methods:
            s = step.similarity[method]
            cells += [_cell(s.spearman if s else None, "score"), _cell(s.top_k if s else None, "percent")]
        rows.append(Row(step.name, "", cells))
    return top, sub, rows


def _spearman(step: Step, method: str) -> float | None:
    s = step.similarity[method]
    return s.spearman if s else None


def plot(h: History) -> Plot | None:
    """Spearman to the reference, one line per method, and accuracy dashed; None when nothing to draw."""
    # accuracy first, so the methods' lines are drawn over it
    lines = [Line("accuracy", [s.accuracy for s in h.steps], ACCURACY_COLOR, dashed=True, kind="percent")]
    lines += [Line(f"{m} Spearman", [_spearman(s, m) for s in h.steps], PALETTE[i % len(PALETTE)])
              for i, m in enumerate(h.methods)]
    lines = [line for line in lines if any(v is not None for v in line.values)]
    if not lines:
        return None
    return line_plot([s.name for s in h.steps], lines)
