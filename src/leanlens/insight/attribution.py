"""Shapley values of tabular rows: what each feature added to one output, from a background's expectation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from leanlens.explain.targets import Targets


@dataclass(frozen=True)
class Attribution:
    """Each row's explained output split into one contribution a feature.

    Efficiency holds row by row: `base_values + values.sum(1)` is the model's output for
    the row's target class in `space` ("probability", "log-odds", "logit", "score" or
    "raw"); `base_values` is that output's expectation over the background (shap's name).
    """

    values: np.ndarray  # (N, d)
    base_values: np.ndarray  # (N,)
    target: np.ndarray  # (N,) the explained class, an index into the model's classes
    feature_names: tuple[str, ...]
    method: str  # "treeshap" or "kernelshap"
    space: str

    @property
    def output(self) -> np.ndarray:
        """The explained output of each row: base value plus the sum of contributions."""
        return self.base_values + self.values.sum(1)


def resolve_target(target, scores: np.ndarray) -> np.ndarray:
    """One class index a row: `target` (None: each row's predicted class), checked against the scores."""
    targets = Targets(target, len(scores))
    return targets.pick(torch.as_tensor(scores)).cpu().numpy()
