"""`check()`: the version gate. Does a candidate still explain the held-out probes as the reference did?"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from leanlens.audit.profile import fingerprint
from leanlens.data import as_dataset
from leanlens.errors import BadInput, BadOption
from leanlens.explain import explain
from leanlens.metrics import has_object, spearman
from leanlens.models.wrap import wrap
from leanlens.store import Explained, Probe, Store, opened

SAMPLES = ("with_object", "all")


@dataclass(frozen=True)
class Check:
    """One gated figure: a method's similarity to the reference, or accuracy, or agreement."""

    name: str
    score: float
    threshold: float | None  # None: reported, not gated
    samples: int  # how many samples the score is a mean over

    @property
    def passed(self) -> bool:
        return self.threshold is None or self.score >= self.threshold


@dataclass(frozen=True)
class Verdict:
    """What the gate found; it holds when every method and every gated figure passes."""

    reference: str
    candidate: str  # the candidate's fingerprint
    methods: dict[str, Check]  # mean Spearman to the reference, per method
    accuracy: Check | None = None  # on the data given
    agreement: Check | None = None  # same predicted class as the reference, on the held-out probes
    recorded: int | None = field(default=None, compare=False)  # the gate run's id; None on a dry run

    @property
    def checks(self) -> list[Check]:
        return [*self.methods.values(), *(c for c in (self.accuracy, self.agreement) if c is not None)]

    @property
    def holds(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict:
        return {"holds": self.holds, "checks": [{**asdict(c), "passed": c.passed} for c in self.checks]}


def check(store, candidate, reference: str = "v0", *, data=None, methods=None, threshold: float = 0.92,
          accuracy_threshold: float | None = None, agreement_threshold: float | None = None,
          samples: str = "with_object", dry_run: bool = False) -> Verdict:
    """Explain the store's held-out probes with `candidate` and compare with version `reference`.

    Each method is explained with the targets and options its reference explanation was
    made with, and scored by the mean Spearman rank correlation with it; every method
    must reach `threshold`. The run is recorded in the store in one transaction at the
    end (nothing with `dry_run=True`); the reference's own rows are never written.

    Parameters
    ----------
    store : a `Store` or the path of an existing store file.
    candidate : the model to gate (anything `ll.wrap` takes).
    reference : the recorded version to compare with.
    data : a dataset to measure the candidate's accuracy on (not the few probes).
    methods : the methods to compare; by default every method the reference was explained with.
    threshold : the lowest mean Spearman a method may have.
    accuracy_threshold : the lowest accuracy on `data`; by default the reference's recorded
        accuracy minus one point, when it has one.
    agreement_threshold : the lowest share of held-out probes where the candidate predicts the
        reference's class; None reports it without gating.
    samples : "with_object" compares the held-out probes whose mask holds an object (all of them
        when there are no masks), "all" every held-out probe.
    dry_run : compare without recording anything.
    """
    _check_options(samples, {"threshold": threshold, "accuracy_threshold": accuracy_threshold,
                             "agreement_threshold": agreement_threshold})
    with opened(store) as records:
        if not dry_run and records.read_only:
            raise BadInput(f"{records.path} is read-only, so the gate run cannot be recorded",
                           "pass dry_run=True (--dry-run) to check without recording")
        records.version(reference)  # an unknown reference fails before any explaining
        model = wrap(candidate)
        every = records.probe()
        held, probe = every.held_out, every.part("held_out")
        keep = compared_samples(probe, samples)
        _check_classes(records, reference, model, probe)
        names = list(records.explanations(reference)) if methods is None else list(methods)
        if not names:
            raise BadInput(f"version {reference!r} was recorded without explanations",
                           "record the reference with store.record_assessment(...)")
        verdict = Verdict(
            reference, fingerprint(model),
            {m: _similarity(records.explained(reference, m), model, probe.x, held, keep, threshold) for m in names},
            accuracy=_accuracy(model, data, accuracy_threshold, records.version(reference).metrics),
            agreement=_agreement(records.predictions(reference), model, probe.x, held, agreement_threshold))
        if dry_run:
            return verdict
        run = records.record_gate_run(reference=reference, candidate=verdict.candidate, holds=verdict.holds,
                                      verdict=verdict.to_json())
        return replace(verdict, recorded=run.id)


def _check_options(samples: str, thresholds: dict) -> None:
    if samples not in SAMPLES:
        raise BadOption(f"samples={samples!r}", "use 'with_object' or 'all'")
    for name, value in thresholds.items():
        if value is None and name != "threshold":
            continue  # reported, not gated
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise BadOption(f"{name}={value!r}", "a threshold is a number from 0 to 1, e.g. 0.92")


def compared_samples(probe: Probe, samples: str) -> np.ndarray:
    """Which held-out probes the similarity is a mean over."""
    if len(probe) == 0:
        raise BadInput("the store's probe set has no held-out samples",
                       "set the probe with held_out= marking the samples replay never trains on")
    if samples == "with_object" and probe.masks is not None and has_object(probe.masks).any():
        return has_object(probe.masks)
    return np.ones(len(probe), bool)


def _check_classes(store: Store, reference: str, model, probe: Probe) -> None:
    stored = store.predictions(reference)
    if stored is None or stored.ndim != 2:
        return
    scored = model.predict(probe.x[:1]).shape[-1]
    if scored != stored.shape[-1]:
        raise BadInput(f"the candidate scores {scored} classes but {reference!r} scored {stored.shape[-1]}",
                       "gate a candidate made from the reference, with the same output layer")


def _similarity(stored: Explained, model, x: np.ndarray, held: np.ndarray, keep: np.ndarray,
                threshold: float) -> Check:
    """Explain the compared probes as the reference was explained (same targets, same options)."""
    target = None if stored.target is None else stored.target[held][keep]
    explained = explain(model, x[keep], method=stored.method, target=target, **stored.options)
    score = float(np.mean(spearman(stored.values[held][keep], explained.values)))
    return Check(stored.method, score, threshold, int(keep.sum()))


def _accuracy(model, data, threshold: float | None, reference_metrics: dict) -> Check | None:
    if data is None:
        return None
    data = as_dataset(data)
    if threshold is None and isinstance(reference_metrics.get("accuracy"), (int, float)):
        threshold = reference_metrics["accuracy"] - 0.01
    accuracy = float(np.mean(model.predict(data.x).argmax(-1) == data.y))
    return Check("accuracy", accuracy, threshold, len(data))


def _agreement(stored: np.ndarray | None, model, x: np.ndarray, held: np.ndarray,
               threshold: float | None) -> Check | None:
    if stored is None or stored.ndim != 2:
        return None  # the reference was recorded without its scores on the probes
    same = model.predict(x).argmax(-1) == stored[held].argmax(-1)
    return Check("agreement", float(same.mean()), threshold, len(same))
