"""Does an explanation point at the object? Scores against ground-truth masks.

``values`` may be ``(N, H, W)``, ``(N, 1, H, W)`` or ``(N, C, H, W)`` (channels
collapse as in :func:`leanlens.metrics.heatmap.heatmap`); ``masks`` are ``(N, H, W)``,
boolean or 0/1. A sample whose mask is
empty cannot be scored fairly (there is nothing to point at): select samples
with :func:`has_object` first.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

from leanlens.errors import BadInput
from leanlens.metrics.heatmap import heatmap
from leanlens.metrics.inputs import as_maps, as_numpy, flat


def has_object(masks) -> np.ndarray:
    """Per sample: does the mask contain at least one pixel?"""
    m = _as_masks(masks)
    return flat(m).any(axis=1)


def _as_masks(masks) -> np.ndarray:
    m = as_numpy(masks, "masks")
    if m.ndim != 3:
        raise BadInput(f"masks have shape {m.shape}, expected (N, H, W)",
                       "drop the channel axis, e.g. masks[:, 0]")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise BadInput("masks hold values other than 0 and 1",
                           "threshold them, e.g. masks > 0.5")
        m = m.astype(bool)
    return m


def _as_heatmaps(values, masks) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) float maps and (N, H, W) bool masks, checked against each other."""
    v = heatmap(as_maps(values, "values"))
    m = _as_masks(masks)
    if v.shape != m.shape:
        raise BadInput(f"maps are {v.shape} (channels collapsed) but masks are {m.shape}",
                       "resize masks to the explanation's resolution")
    if v.shape[1] * v.shape[2] == 0:
        raise BadInput(f"maps of shape {v.shape} have no pixels", "pass non-empty maps")
    return v, m


def _disk(radius: int) -> np.ndarray:
    """Euclidean disk structuring element, with a leading length-1 batch axis."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2 <= radius ** 2)[None]


def pointing_game(values, masks, tolerance: int = 0) -> np.ndarray:
    """Per sample: does the map's maximum fall inside the mask?

    The mask is first grown by ``tolerance`` pixels (Euclidean). Ties for the
    maximum go to the first pixel in row-major order. Empty masks give False.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) \
            or tolerance < 0:
        raise BadInput(f"tolerance={tolerance!r} is not a whole number >= 0",
                       "give the tolerance in pixels, e.g. 15")
    v, m = _as_heatmaps(values, masks)
    if tolerance > 0:
        m = binary_dilation(m, structure=_disk(int(tolerance)))
    peak = flat(v).argmax(axis=1)
    return flat(m)[np.arange(len(peak)), peak]


def relevance_mass(values, masks) -> np.ndarray:
    """Per sample: share of the positive relevance that lies inside the mask.

    Negative relevance is ignored; a map with no positive relevance scores 0.0.
    """
    v, m = _as_heatmaps(values, masks)
    pos = flat(np.clip(v, 0.0, None))
    total = pos.sum(axis=1)
    inside = (pos * flat(m)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = inside / total
    return np.where(total > 0, share, 0.0)


def relevance_rank_accuracy(values, masks) -> np.ndarray:
    """Per sample: share of the K highest-ranked pixels that lie inside the mask, K = mask size
    (Arras et al., 2022; Quantus: RelevanceRankAccuracy).

    Pixels rank by signed value, ties to the first in row-major order. An empty mask gives 0.0.
    """
    v, m = _as_heatmaps(values, masks)
    v, m = flat(v), flat(m)
    k = m.sum(axis=1)
    order = np.argsort(-v, axis=1, kind="stable")
    ranked_inside = np.take_along_axis(m, order, axis=1)
    top = np.arange(v.shape[1])[None] < k[:, None]  # the first k places of each sample's ranking
    hits = (ranked_inside & top).sum(axis=1)
    return np.where(k > 0, hits / np.maximum(k, 1), 0.0)
