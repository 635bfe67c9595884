"""How concentrated is an explanation? Sparseness (Gini) and complexity (entropy).

Both read the magnitude of each attribution, so a feature that pushes the score down
counts as much as one that pushes it up, and both ignore the map's scale. Every entry of
``values`` (N, ...) is a feature; collapse channels first (`heatmap`) to score pixels.
"""

from __future__ import annotations

import numpy as np

from leanlens.errors import BadInput
from leanlens.metrics.inputs import as_maps, flat


def _magnitudes(values) -> np.ndarray:
    a = flat(as_maps(values, "values"))
    if a.shape[1] == 0:
        raise BadInput(f"values of shape {a.shape} have no features", "pass non-empty maps")
    return np.abs(a)


def sparseness(values) -> np.ndarray:
    """Gini index of |attribution| per sample (Chalasani et al., 2020; Quantus: Sparseness).

    1 - 1/d for a map with one non-zero feature out of d (the most a map of d features
    can reach), 0 for a constant map; an all-zero map scores 0 too (nothing stands out).
    """
    a = np.sort(_magnitudes(values), axis=1)
    d = a.shape[1]
    weights = 2 * np.arange(1, d + 1) - d - 1  # the Gini weight of the i-th smallest value
    total = a.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gini = (a * weights).sum(axis=1) / (d * total)
    return np.where(total > 0, gini, 0.0)


def complexity(values) -> np.ndarray:
    """Entropy (natural log) of |attribution| / sum |attribution| per sample (Bhatt et al., 2020;
    Quantus: Complexity).

    0 for one non-zero feature, log(d) for a uniform map of d features; an all-zero map
    is read as uniform, log(d), since no feature is singled out.
    """
    a = _magnitudes(values)
    total = a.sum(axis=1, keepdims=True)
    p = np.divide(a, total, out=np.full_like(a, 1.0 / a.shape[1]), where=total > 0)
    # 0 log 0 = 0: a feature with no attribution adds nothing to the entropy
    terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=1)
