"""`audit()`: what changed between a reference model and a compressed candidate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from leanlens.audit.figures import ModelFigures, profile_figures
from leanlens.audit.profile import Profile, cost, profile
from leanlens.audit.runtimes import Latency, latencies
from leanlens.audit.timing import Clock
from leanlens.data import Dataset, as_dataset
from leanlens.errors import BadInput, BadOption
from leanlens.explain import Explanation, explain
from leanlens.metrics import ExplanationScores, score_explanations
from leanlens.models.wrap import wrap


def best_fp32_ms(latency: Latency) -> float:
    """The reference time a speed-up is read against: the best fp32 path, else the model's own."""
    return (latency.fp32 or latency.own).median_ms


@dataclass(frozen=True)
class Assessment:
    """One model measured on a dataset and explained on a probe set."""

    profile: Profile
    accuracy: float
    predictions: np.ndarray  # class indices on the whole dataset
    explanations: dict[str, Explanation] = field(default_factory=dict)  # on the probe set
    scores: dict[str, ExplanationScores] = field(default_factory=dict)  # localization, by method
    probe_digest: str = ""  # which probe set the explanations are of (see `digest`)

    def figures(self) -> ModelFigures:
        """This model as its own reference: its speed-up is against its own best fp32 path."""
        return ModelFigures(accuracy=self.accuracy,
                            **profile_figures(self.profile, reference_fp32_ms=best_fp32_ms(self.profile.latency)))


@dataclass(frozen=True)
class AuditResult:
    reference: Assessment
    candidate: Assessment
    agreement: float  # share of samples where both models predict the same class
    scores: dict[str, ExplanationScores]  # the candidate's, similarity to the reference included
    reference_latency: Latency  # timed in the same run as the candidate's

    @property
    def explanations(self) -> dict[str, Explanation]:
        return self.candidate.explanations

    def figures(self) -> ModelFigures:
        """The candidate's figures; its speed-up is against the reference's best fp32 path."""
        fp32_ms = best_fp32_ms(self.reference_latency)
        return ModelFigures(accuracy=self.candidate.accuracy, agreement=self.agreement,
                            **profile_figures(self.candidate.profile, reference_fp32_ms=fp32_ms))


def digest(probe: Dataset) -> str:
    """A short hash of the probe's inputs and targets: explanations of other samples never compare."""
    return hashlib.sha256(np.ascontiguousarray(probe.x).tobytes() + np.ascontiguousarray(probe.y).tobytes()).hexdigest()[:16]


def _explained(model, data: Dataset, probe: Dataset, methods, profile_: Profile, score) -> Assessment:
    predictions = model.predict(data.x).argmax(-1)
    explanations = {m: explain(model, probe.x, method=m, target=probe.y) for m in methods}
    scores = {m: score(e.values, masks=probe.masks) for m, e in explanations.items()}
    return Assessment(profile_, float((predictions == data.y).mean()), predictions, explanations, scores,
                      digest(probe))


def _check_reusable(assessment: Assessment, probe: Dataset, methods) -> None:
    """An earlier assessment of the reference must be of this probe set and hold every method."""
    if assessment.probe_digest != digest(probe):
        raise BadOption("reference_assessment was made on another probe set",
                        "pass probe= the same probe set that assess() was given")
    missing = [m for m in methods if m not in assessment.explanations]
    if missing:
        raise BadOption(f"reference_assessment has no {missing[0]!r} explanations",
                        f"assess the reference with methods={tuple(methods)!r}")


def assess(model, data, probe: Dataset, methods=("gradcam++",), *, latency_batch: int = 32,
           pointing_tolerance: int = 0, top_k_fraction: float = 0.1, clock: Clock | None = None) -> Assessment:
    """Accuracy and cost of `model` on `data`, and its explanations of `probe`'s true classes.

    The pointing game counts a hit when a map's peak lies within `pointing_tolerance`
    pixels of the object's mask (Zhang et al., 2016 use 15 px on 224 px images).
    """
    model, data = wrap(model), as_dataset(data)
    measured = profile(model, data.x, batch=latency_batch, clock=clock)
    score = partial(score_explanations, pointing_tolerance=pointing_tolerance, top_k_fraction=top_k_fraction)
    return _explained(model, data, probe, methods, measured, score)


def _check_same_classes(reference, candidate, x: np.ndarray) -> None:
    ref, cand = reference.predict(x[:1]).shape[-1], candidate.predict(x[:1]).shape[-1]
    if ref != cand:
        raise BadInput(f"the reference scores {ref} classes but the candidate scores {cand}",
                       "audit a candidate made from the reference, with the same output layer")


def audit(
    reference, candidate, data, methods=("gradcam++",), *, probe: Dataset | None = None,
    reference_assessment: Assessment | None = None, pointing_tolerance: int = 0, top_k_fraction: float = 0.1,
    latency_batch: int = 32, clock: Clock | None = None,
) -> AuditResult:
    """Compare `candidate` with `reference` on `data`: cost, accuracy, agreement, explanations.

    Parameters
    ----------
    reference, candidate : models (anything `ll.wrap` takes).
    data : the evaluation set (a Dataset, (x, y) tuple or DataLoader).
    methods : attribution methods whose explanations are compared on the probe set.
    probe : the samples explained; by default `probe_set(data)`.
    reference_assessment : reuse an earlier `assess()` of the reference instead of explaining it again.
    pointing_tolerance : pixels around the mask that still count as a hit in the pointing game.
    top_k_fraction : share of the features compared by the top-k overlap.
    latency_batch : samples in the timed batch; both models are timed in one interleaved run.
    clock : seconds as a monotonic float (tests inject a fake one).
    """
    reference, candidate, data = wrap(reference), wrap(candidate), as_dataset(data)
    _check_same_classes(reference, candidate, data.x)
    probe = probe if probe is not None else probe_set(data)
    if reference_assessment is not None:
        _check_reusable(reference_assessment, probe, methods)
    example = data.x[:latency_batch]
    ref_latency, cand_latency = latencies([reference, candidate], example, clock=clock)
    score = partial(score_explanations, pointing_tolerance=pointing_tolerance, top_k_fraction=top_k_fraction)
    ref = reference_assessment or _explained(
        reference, data, probe, methods, Profile(cost(reference, example), ref_latency, len(example)), score)
    cand = _explained(candidate, data, probe, methods,
                      Profile(cost(candidate, example), cand_latency, len(example)), score)
    scores = {m: score(cand.explanations[m].values, reference=ref.explanations[m].values, masks=probe.masks)
              for m in methods}
    agreement = float((ref.predictions == cand.predictions).mean())
    return AuditResult(ref, cand, agreement, scores, ref_latency)


def probe_set(data: Dataset, n: int = 32, seed: int = 0) -> Dataset:
    """A fixed, class-balanced selection of up to `n` samples to explain in every version."""
    rng = np.random.default_rng(seed)
    classes = np.unique(data.y)
    per_class = max(1, n // len(classes))
    chosen = [rng.permutation(np.flatnonzero(data.y == c))[:per_class] for c in classes]
    return data.subset(np.sort(np.concatenate(chosen)))
