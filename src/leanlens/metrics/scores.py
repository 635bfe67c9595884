"""`ExplanationScores`: one method's explanations of a probe set, scored once for every reader."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leanlens.errors import BadInput
from leanlens.metrics.complexity import complexity, sparseness
from leanlens.metrics.localization import (
    has_object,
    pointing_game,
    relevance_mass,
    relevance_rank_accuracy,
)
from leanlens.metrics.record import Record, shown
from leanlens.metrics.similarity import cosine, spearman, top_k_overlap
from leanlens.metrics.ssim import ssim

SIMILARITY = "similarity to the reference"
LOCALIZATION = "localization on the object masks"
CONCENTRATION = "how concentrated the map is"


@dataclass(frozen=True)
class ExplanationScores(Record):
    """Means over the probe samples; a figure that could not be measured stays None.

    Similarity needs a reference's explanations of the same samples; localization needs
    object masks and is averaged over the samples that have an object.
    """

    spearman: float | None = shown(
        "Spearman", "score", "rank correlation with the reference's map; 1 = the same ranking", group=SIMILARITY)
    top_k: float | None = shown(
        "top-k", "percent", "share of the reference's top-k features that are also in this top-k "
        "(k = top_k_fraction of the features)", group=SIMILARITY)
    cosine: float | None = shown("cosine", "score", "cosine similarity with the reference's map", group=SIMILARITY)
    ssim: float | None = shown(
        "SSIM", "score", "structural similarity with the reference's map (2-D maps of at least 11×11)",
        group=SIMILARITY, detail=True)
    pointing_game: float | None = shown(
        "pointing", "percent", "share of images whose hottest pixel lies on the object "
        "(within pointing_tolerance pixels)", group=LOCALIZATION)
    relevance_mass: float | None = shown(
        "mass", "percent", "share of the positive relevance that lies on the object", group=LOCALIZATION)
    relevance_rank: float | None = shown(
        "rank acc.", "percent", "share of the object's size in top-ranked pixels that lie on the object",
        group=LOCALIZATION, detail=True)
    sparseness: float | None = shown(
        "Gini", "score", "Gini index of |attribution|: 0 spread evenly, near 1 on a few features",
        group=CONCENTRATION, detail=True)
    complexity: float | None = None  # entropy of |attribution| (nats): kept, not shown beside the Gini index
    top_k_fraction: float = 0.1
    pointing_tolerance: int = 0  # pixels around the mask that still count as a hit


def _mean(per_sample: np.ndarray) -> float:
    return float(np.mean(per_sample))


def _ssim(reference, values) -> float | None:
    """SSIM where the maps are images large enough for its window; None for feature vectors."""
    try:
        return _mean(ssim(reference, values))
    except BadInput:
        return None


def score_explanations(values, *, reference=None, masks=None, top_k_fraction: float = 0.1,
                       pointing_tolerance: int = 0) -> ExplanationScores:
    """Score explanation `values` (N, ...) against a `reference`'s values and object `masks`.

    Either comparison is skipped when its input is None; localization is also skipped when
    no mask holds an object.
    """
    figures = {"sparseness": _mean(sparseness(values)), "complexity": _mean(complexity(values))}
    if reference is not None:
        figures.update(spearman=_mean(spearman(reference, values)),
                       top_k=_mean(top_k_overlap(reference, values, top_k_fraction)),
                       cosine=_mean(cosine(reference, values)), ssim=_ssim(reference, values))
    if masks is not None and has_object(masks).any():
        keep = has_object(masks)
        figures.update(pointing_game=_mean(pointing_game(values[keep], masks[keep], pointing_tolerance)),
                       relevance_mass=_mean(relevance_mass(values[keep], masks[keep])),
                       relevance_rank=_mean(relevance_rank_accuracy(values[keep], masks[keep])))
    return ExplanationScores(**figures, top_k_fraction=top_k_fraction, pointing_tolerance=pointing_tolerance)
