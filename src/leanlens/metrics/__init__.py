"""Metrics that score explanations: agreement between two, and localization."""

from leanlens.metrics.localization import has_object, pointing_game, relevance_mass
from leanlens.metrics.similarity import SIMILARITIES, cosine, spearman, top_k_overlap

__all__ = [
    "SIMILARITIES",
    "cosine",
    "has_object",
    "pointing_game",
    "relevance_mass",
    "spearman",
    "top_k_overlap",
]
