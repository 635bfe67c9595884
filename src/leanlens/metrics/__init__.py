"""Metrics that score explanations: agreement between two, localization, faithfulness,
robustness, concentration, and the randomization sanity check."""

from leanlens.metrics.complexity import complexity, sparseness
from leanlens.metrics.faithfulness import (
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
)
from leanlens.metrics.heatmap import heatmap
from leanlens.metrics.localization import (
    has_object,
    pointing_game,
    relevance_mass,
    relevance_rank_accuracy,
)
from leanlens.metrics.randomization import RandomizationCheck, randomization_check
from leanlens.metrics.record import Record, Shown, shown
from leanlens.metrics.robustness import max_sensitivity
from leanlens.metrics.scores import ExplanationScores, score_explanations
from leanlens.metrics.similarity import SIMILARITIES, cosine, spearman, top_k_overlap
from leanlens.metrics.ssim import ssim

__all__ = [
    "SIMILARITIES",
    "ExplanationScores",
    "RandomizationCheck",
    "Record",
    "Shown",
    "complexity",
    "cosine",
    "deletion_auc",
    "deletion_curve",
    "has_object",
    "heatmap",
    "insertion_auc",
    "insertion_curve",
    "max_sensitivity",
    "pointing_game",
    "randomization_check",
    "relevance_mass",
    "relevance_rank_accuracy",
    "score_explanations",
    "shown",
    "sparseness",
    "spearman",
    "ssim",
    "top_k_overlap",
]
