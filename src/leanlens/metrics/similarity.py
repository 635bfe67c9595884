"""How much two explanations of the same inputs agree, one score per sample.

Every function takes two arrays of the same shape, batch first ``(N, ...)``,
flattens each sample to a vector and returns a float64 array of shape ``(N,)``.

Degenerate maps (constant for ``spearman``, all zero for ``cosine``) have no
defined correlation; we score them 1.0 when both maps are identical and 0.0
otherwise, so a mean over samples is never nan.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from leanlens.errors import BadInput
from leanlens.metrics.inputs import as_pair


def _degenerate(a: np.ndarray, b: np.ndarray, bad_a, bad_b) -> np.ndarray:
    """Score for samples where a or b is degenerate: 1 if identical, else 0."""
    same = (a == b).all(axis=1)
    return np.where(bad_a & bad_b & same, 1.0, 0.0)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation; nan where a row has zero variance."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / den
    return np.clip(r, -1.0, 1.0)  # rounding can step just past +-1


def spearman(a, b) -> np.ndarray:
    """Spearman rank correlation per sample (ties get average ranks).

    A constant map has no ranking: the score is 1.0 if both maps are constant
    and equal, else 0.0.
    """
    a, b = as_pair(a, b)
    r = _pearson_rows(rankdata(a, axis=1), rankdata(b, axis=1))
    const_a = (a == a[:, :1]).all(axis=1)
    const_b = (b == b[:, :1]).all(axis=1)
    bad = const_a | const_b
    return np.where(bad, _degenerate(a, b, const_a, const_b), r)


def _top_mask(x: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N, F) mask of the k largest values per row (ties: lower index)."""
    order = np.argsort(-x, axis=1, kind="stable")[:, :k]
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def top_k_overlap(a, b, fraction: float = 0.1) -> np.ndarray:
    """Share of the top-k features of a that are also top-k in b.

    k = max(1, round(fraction * features)); features are ranked by signed
    value, not magnitude, and ties go to the lower index.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) \
            or not 0.0 < float(fraction) <= 1.0:
        raise BadInput(f"fraction={fraction!r} is not in (0, 1]",
                       "use e.g. fraction=0.1 for the top 10 %")
    a, b = as_pair(a, b)
    k = max(1, round(float(fraction) * a.shape[1]))
    both = _top_mask(a, k) & _top_mask(b, k)
    return both.sum(axis=1) / k


def cosine(a, b) -> np.ndarray:
    """Cosine similarity per sample; an all-zero map scores 1.0 only against another."""
    a, b = as_pair(a, b)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (a * b).sum(axis=1) / (na * nb)
    zero_a, zero_b = na == 0, nb == 0
    c = np.where(zero_a | zero_b, _degenerate(a, b, zero_a, zero_b), c)
    return np.clip(c, -1.0, 1.0)


SIMILARITIES = {
    "spearman": spearman,
    "top_k_overlap": top_k_overlap,
    "cosine": cosine,
}
