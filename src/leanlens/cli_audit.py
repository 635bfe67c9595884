"""`leanlens audit`: its arguments loaded and checked, the store it records in, and its result as tables or JSON.

Everything that can refuse is checked before the audit runs, so a mistake costs seconds,
not minutes, and a refused audit writes nothing: a store file this command created is
removed again if recording into it fails.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from leanlens.audit import AuditResult, ModelFigures, fingerprint, probe_set
from leanlens.cli_inputs import read_data
from leanlens.data import Dataset
from leanlens.errors import BadInput, BadOption
from leanlens.explain.checks import require
from leanlens.explain.registry import lookup
from leanlens.metrics import ExplanationScores
from leanlens.metrics.record import formatted
from leanlens.models.modelfile import resolve_model
from leanlens.store import Store, Version, held_out_split, opened

# the name of an empty store's first version: the reference, as `leanlens check` expects by default
REFERENCE_NAME = "v0"
MISSING = "—"


@dataclass(frozen=True)
class Destination:
    """The store an audit is recorded in, as it was before the audit."""

    path: Path
    name: str  # the candidate's version
    parent: str | None  # as given with --parent
    versions: tuple[Version, ...]  # recorded already
    probe: Dataset | None  # the store's probe set; None: it has none yet

    @property
    def records_reference(self) -> bool:
        return not self.versions


def destination(store: Path | None, name: str | None, parent: str | None) -> Destination | None:
    """The store to record in, checked: readable, writable, the name free and the parent known."""
    if store is None:
        if name is not None or parent is not None:
            raise BadOption("--name and --parent go with --store", "pass --store FILE to record, or drop them")
        return None
    if not name:
        raise BadOption("--store needs --name", "name the candidate's version, e.g. --name v1-pruned")
    versions, probe = _existing(store) if store.exists() else _creatable(store)
    names = [v.name for v in versions]
    if name in names:
        raise BadInput(f"version {name!r} already exists in {store}", "pick a new --name")
    if not versions and name == REFERENCE_NAME:
        raise BadOption(f"--name {name} is what the reference is recorded as in a store without versions",
                        "name the candidate otherwise, e.g. --name v1")
    known = names or [REFERENCE_NAME]
    if parent is not None and parent not in known:
        raise BadInput(f"--parent {parent!r} is not a version of {store}", f"use one of {', '.join(known)}")
    return Destination(store, name, parent, tuple(versions), probe)


def _existing(path: Path) -> tuple[list[Version], Dataset | None]:
    with opened(path) as store:  # a damaged or foreign file is refused here
        if store.read_only:
            raise BadInput(f"{path} is read-only", "pass a store you can write to, or drop --store")
        return store.versions(), _probe(store)


def _creatable(path: Path) -> tuple[list[Version], None]:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise BadInput(f"cannot create {path}: {folder} is not a folder you can write to",
                       "pass --store in an existing, writable folder")
    return [], None


def _probe(store: Store) -> Dataset | None:
    try:
        probe = store.probe()
    except BadInput:  # the store was made but no probe set yet: the audit's becomes its probe set
        return None
    if probe.y is None:
        raise BadInput(f"the probe set of {store.path} has no labels to explain",
                       "record into a store whose probe set has labels, or a new --store")
    return Dataset(probe.x, probe.y, probe.masks)


def check_methods(methods: tuple[str, ...], models=()) -> None:
    """Every method known (before anything loads) and, once `models` are loaded, able to explain them."""
    for m in methods:
        needs = lookup(m).needs
        for model in models:
            require(model, needs, m)


def check_fits(probe: Dataset | None, data: Dataset, reference) -> None:
    """DATA's labels are classes the reference scores, and its samples are shaped like the store's probes."""
    classes = reference.predict(data.x[:1]).shape[-1]  # a sample of the wrong shape is refused here
    if data.y.max() >= classes:
        raise BadInput(f"DATA has labels up to {data.y.max()} but the reference scores {classes} classes",
                       "pass the data the models were trained on")
    if probe is not None and probe.x.shape[1:] != data.x.shape[1:]:
        raise BadInput(f"the store's probes have shape {probe.x.shape[1:]} but DATA's samples {data.x.shape[1:]}",
                       "record into a store made for this data, or a new --store")


def record(where: Destination, reference, candidate, result: AuditResult, probe: Dataset,
           extra: dict | None = None) -> list[str]:
    """Record the candidate (after the reference, in a store without versions), with the `extra`
    metrics; the names written."""
    with undone_if_new(where.path), Store(where.path) as store:
        if where.probe is None:
            store.set_probe(probe.x, probe.y, probe.masks, held_out=held_out_split(probe.y))
        written, parent = [], where.parent
        if where.records_reference:
            store.record_assessment(REFERENCE_NAME, reference, result.reference)
            written.append(REFERENCE_NAME)
            parent = parent or REFERENCE_NAME
        parent = parent or _recorded_as(where.versions, fingerprint(reference))
        store.record_assessment(where.name, candidate, result, parent=parent, extra=extra)
        return [*written, where.name]


@contextlib.contextmanager
def undone_if_new(path: Path):
    """Writing to a store: if it did not exist before and anything fails, it goes again, with its
    SQLite side files, so that nothing half-written stays behind."""
    created = not path.exists()
    try:
        yield
    except BaseException:
        if created:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        raise


def _recorded_as(versions, reference_fingerprint: str) -> str | None:
    """The latest version holding the reference's weights: the candidate's parent when none is given."""
    return next((v.name for v in reversed(versions) if v.fingerprint == reference_fingerprint), None)


def _rows(result: AuditResult) -> dict[str, ModelFigures]:
    return {"reference": result.reference.figures(), "candidate": result.figures()}


def models_table(result: AuditResult, names: dict[str, str]) -> Table:
    """Reference and candidate side by side: every figure that one of them has."""
    rows = _rows(result)
    shown = [(field, s) for field, s in ModelFigures.shown_fields()
             if any(formatted(getattr(f, field), s.kind) for f in rows.values())]
    table = Table(title="leanlens audit: the models")
    table.add_column("model")
    for _, s in shown:
        table.add_column(s.label, justify="right")
    for role, figures in rows.items():
        cells = (formatted(getattr(figures, field), s.kind) or MISSING for field, s in shown)
        table.add_row(f"{role} {escape(names[role])}", *map(escape, cells))
    return table


def methods_table(result: AuditResult) -> Table:
    """Per method: the candidate's similarity to the reference's maps, and both models' pointing game."""
    fraction = next(iter(result.scores.values())).top_k_fraction
    table = Table(title=f"leanlens audit: explanations of {len(next(iter(result.explanations.values())))} probes")
    for header in ("method", "Spearman", f"top-{100 * fraction:.0f} %", "pointing, reference", "pointing, candidate"):
        table.add_column(header, justify="left" if header == "method" else "right")
    for method, scores in result.scores.items():
        reference = result.reference.scores.get(method, ExplanationScores())
        table.add_row(escape(method), *(formatted(value, kind) or MISSING for value, kind in (
            (scores.spearman, "score"), (scores.top_k, "percent"),
            (reference.pointing_game, "percent"), (scores.pointing_game, "percent"))))
    return table


def as_json(result: AuditResult, names: dict[str, str], recorded: dict | None) -> dict:
    """The figures as the store keeps them: each model's, then each method's scores for both."""
    return {
        **{role: {"model": names[role], **figures.to_json()} for role, figures in _rows(result).items()},
        "methods": {m: {"candidate": s.to_json(), "reference": result.reference.scores[m].to_json()}
                    for m, s in result.scores.items()},
        "recorded": recorded,
    }


@dataclass(frozen=True)
class Job:
    """What `leanlens audit` was asked to do, loaded and checked."""

    models: tuple  # reference, candidate
    data: Dataset
    methods: tuple[str, ...]
    probe: Dataset  # the store's probes when it has them, else the audit's default selection of DATA
    where: Destination | None


def prepare(reference: str, candidate: str, data: str, methods: tuple[str, ...], *, n: int | None,
            store: Path | None, name: str | None, parent: str | None, weights: tuple, trust_pickle: bool) -> Job:
    """The command's arguments as API values, cheapest checks first: nothing is audited yet."""
    check_methods(methods)
    where = destination(store, name, parent)  # before the models: a mistake here costs no loading
    models = tuple(resolve_model(spec, w, trust_pickle) for spec, w in zip((reference, candidate), weights,
                                                                          strict=True))
    check_methods(methods, models)
    dataset = read_data(data, n)
    stored = None if where is None else where.probe
    check_fits(stored, dataset, models[0])
    return Job(models, dataset, methods, probe_set(dataset) if stored is None else stored, where)
