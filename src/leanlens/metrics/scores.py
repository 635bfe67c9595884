"""`ExplanationScores`: one method's explanations of a probe set, scored once for every reader."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leanlens.metrics.localization import has_object, pointing_game, relevance_mass
from leanlens.metrics.record import Record, shown
from leanlens.metrics.similarity import cosine, spearman, top_k_overlap

SIMILARITY = "similarity to the reference"
LOCALIZATION = "localization on the object masks"


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
    pointing_game: float | None = shown(
        "pointing", "percent", "share of images whose hottest pixel lies on the object "
        "(within pointing_tolerance pixels)", group=LOCALIZATION)
    relevance_mass: float | None = shown(
        "mass", "percent", "share of the positive relevance that lies on the object", group=LOCALIZATION)
    top_k_fraction: float = 0.1
    pointing_tolerance: int = 0  # pixels around the mask that still count as a hit


def _mean(per_sample: np.ndarray) -> float:
    return float(np.mean(per_sample))


def score_explanations(values, *, reference=None, masks=None, top_k_fraction: float = 0.1,
                       pointing_tolerance: int = 0) -> ExplanationScores:
    """Score explanation `values` (N, ...) against a `reference`'s values and object `masks`.

    Either comparison is skipped when its input is None; localization is also skipped when
    no mask holds an object.
    """
    figures = {}
    if reference is not None:
        figures.update(spearman=_mean(spearman(reference, values)),
                       top_k=_mean(top_k_overlap(reference, values, top_k_fraction)),
                       cosine=_mean(cosine(reference, values)))
    if masks is not None and has_object(masks).any():
        keep = has_object(masks)
        figures.update(pointing_game=_mean(pointing_game(values[keep], masks[keep], pointing_tolerance)),
                       relevance_mass=_mean(relevance_mass(values[keep], masks[keep])))
    return ExplanationScores(**figures, top_k_fraction=top_k_fraction, pointing_tolerance=pointing_tolerance)
