"""`audit()`: what changed between a reference model and a compressed candidate."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from leanlens.audit.profile import Profile, profile
from leanlens.data import Dataset, as_dataset
from leanlens.explain import Explanation, explain
from leanlens.metrics import pointing_game, spearman, top_k_overlap
from leanlens.models.wrap import wrap


@dataclass(frozen=True)
class Assessment:
    """One model measured on a dataset and explained on a probe set."""

    profile: Profile
    accuracy: float
    predictions: np.ndarray  # class indices on the whole dataset
    explanations: dict[str, Explanation] = field(default_factory=dict)  # on the probe set
    pointing_game: dict[str, float] = field(default_factory=dict)  # share of hits on probes with a mask


@dataclass(frozen=True)
class AuditResult:
    reference: Assessment
    candidate: Assessment
    agreement: float  # share of samples where both models predict the same class
    similarity: dict[str, dict[str, float]]  # method -> {"spearman", "top10"}, means over the probe

    def metrics(self) -> dict[str, float]:
        """The candidate's figures as one flat dict, relative to the reference where it helps."""
        ref, cand = self.reference.profile, self.candidate.profile
        out = assessment_metrics(self.candidate)
        out.update(
            agreement=self.agreement,
            speedup=ref.latency_ms / cand.latency_ms,
            params_ratio=cand.params / ref.params,
            macs_ratio=cand.macs / ref.macs,
            bytes_ratio=cand.bytes / ref.bytes,
        )
        for method, scores in self.similarity.items():
            out.update({f"{name}[{method}]": value for name, value in scores.items()})
        return out


def assess(model, data, probe: Dataset, methods=("gradcam++",), *, latency_batch: int = 32, pointing_tolerance: int = 0) -> Assessment:
    """Accuracy and cost of `model` on `data`, and its explanations of `probe`'s true classes.

    The pointing game counts a hit when a map's peak lies within `pointing_tolerance`
    pixels of the object's mask (Zhang et al., 2016 use 15 px on 224 px images).
    """
    model, data = wrap(model), as_dataset(data)
    predictions = model.predict(data.x).argmax(-1)
    explanations = {m: explain(model, probe.x, method=m, target=probe.y) for m in methods}
    pointing = {}
    if probe.masks is not None and probe.masks.any():
        has_object = probe.masks.reshape(len(probe), -1).any(1)
        for m, exp in explanations.items():
            values = exp.values if exp.values.ndim == 3 else np.abs(exp.values).sum(1)
            pointing[m] = float(pointing_game(values[has_object], probe.masks[has_object], pointing_tolerance).mean())
    return Assessment(
        profile=profile(model, data.x, batch=latency_batch),
        accuracy=float((predictions == data.y).mean()),
        predictions=predictions,
        explanations=explanations,
        pointing_game=pointing,
    )


def audit(
    reference, candidate, data, methods=("gradcam++",), *, probe: Dataset | None = None,
    reference_assessment: Assessment | None = None, pointing_tolerance: int = 0,
) -> AuditResult:
    """Compare `candidate` with `reference` on `data`: cost, accuracy, agreement, explanations.

    Parameters
    ----------
    reference, candidate : models (anything `ll.wrap` takes).
    data : the evaluation set (a Dataset, (x, y) tuple or DataLoader).
    methods : attribution methods whose explanations are compared on the probe set.
    probe : the samples explained; by default `probe_set(data)`.
    reference_assessment : reuse an earlier `assess()` of the reference instead of measuring again.
    pointing_tolerance : pixels around the mask that still count as a hit in the pointing game.
    """
    data = as_dataset(data)
    probe = probe if probe is not None else probe_set(data)
    ref = reference_assessment or assess(reference, data, probe, methods, pointing_tolerance=pointing_tolerance)
    cand = assess(candidate, data, probe, methods, pointing_tolerance=pointing_tolerance)
    similarity = {
        m: {
            "spearman": float(np.mean(spearman(ref.explanations[m].values, cand.explanations[m].values))),
            "top10": float(np.mean(top_k_overlap(ref.explanations[m].values, cand.explanations[m].values, 0.1))),
        }
        for m in methods
    }
    agreement = float((ref.predictions == cand.predictions).mean())
    return AuditResult(reference=ref, candidate=cand, agreement=agreement, similarity=similarity)


def assessment_metrics(a: Assessment) -> dict[str, float]:
    out = {"accuracy": a.accuracy, **a.profile.as_dict()}
    out.update({f"pointing[{m}]": v for m, v in a.pointing_game.items()})
    return out


def probe_set(data: Dataset, n: int = 32, seed: int = 0) -> Dataset:
    """A fixed, class-balanced selection of up to `n` samples to explain in every version."""
    rng = np.random.default_rng(seed)
    classes = np.unique(data.y)
    per_class = max(1, n // len(classes))
    chosen = [rng.permutation(np.flatnonzero(data.y == c))[:per_class] for c in classes]
    return data.subset(np.sort(np.concatenate(chosen)))
