"""Metrics that score explanations: agreement between two, and localization."""

from leanlens.metrics.heatmap import heatmap
from leanlens.metrics.localization import has_object, pointing_game, relevance_mass
from leanlens.metrics.record import Record, Shown, shown
from leanlens.metrics.scores import ExplanationScores, score_explanations
from leanlens.metrics.similarity import SIMILARITIES, cosine, spearman, top_k_overlap

__all__ = [
    "SIMILARITIES",
    "ExplanationScores",
    "Record",
    "Shown",
    "cosine",
    "has_object",
    "heatmap",
    "pointing_game",
    "relevance_mass",
    "score_explanations",
    "shown",
    "spearman",
    "top_k_overlap",
]
