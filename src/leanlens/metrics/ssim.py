"""Structural similarity (SSIM) of two explanation maps, one score a sample.

Rank correlation and cosine treat a map as a bag of pixels; SSIM compares local means,
contrasts and structure in a Gaussian window, so two maps that highlight the same region
with slightly shifted edges still score high (Wang et al., 2004).
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.ndimage import gaussian_filter

from leanlens.errors import BadInput, BadOption
from leanlens.metrics.heatmap import heatmap
from leanlens.metrics.inputs import as_maps

K1, K2 = 0.01, 0.03  # the constants of Wang et al. that keep the ratios finite
TRUNCATE = 3.5  # window radius in sigmas, as scikit-image: sigma=1.5 gives an 11x11 window


def ssim(a, b, *, sigma: float = 1.5, data_range: float | None = None) -> np.ndarray:
    """Mean SSIM per sample of two batches of 2-D maps, (N,) in [-1, 1].

    Maps are ``(N, H, W)`` or ``(N, C, H, W)`` (channels collapse as in `heatmap`). The
    score is the mean of the SSIM map away from the borders, as
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=sigma,
    use_sample_covariance=False, data_range=data_range)`` computes it.

    Parameters
    ----------
    sigma : the Gaussian window's standard deviation in pixels; the map's sides must be at
        least 2 * round(3.5 * sigma) + 1.
    data_range : the value range the constants scale with; None takes each pair's own range
        (max - min over both maps), since attributions have no fixed range. Two constant,
        equal maps score 1.
    """
    a, b = _as_map_pair(a, b)
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not sigma > 0:
        raise BadOption(f"sigma={sigma!r}", "use a positive number of pixels, e.g. sigma=1.5")
    pad = int(TRUNCATE * sigma + 0.5)
    if min(a.shape[1:]) < 2 * pad + 1:
        raise BadInput(f"maps of {a.shape[1]}x{a.shape[2]} pixels are smaller than the {2 * pad + 1}-pixel "
                       f"SSIM window of sigma={sigma}", "pass a smaller sigma, or compare with spearman")
    rng = _data_range(a, b, data_range)

    def blur(m: np.ndarray) -> np.ndarray:  # the local, Gaussian-weighted mean of each map
        return gaussian_filter(m, sigma=(0, sigma, sigma), truncate=TRUNCATE, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (K1 * rng[:, None, None]) ** 2, (K2 * rng[:, None, None]) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    # the border, where the window reaches past the map, is left out
    score = index[:, pad:a.shape[1] - pad, pad:a.shape[2] - pad].mean(axis=(1, 2))
    # a zero range means both maps are one and the same constant: identical
    return np.where(rng > 0, score, 1.0)


def _as_map_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = heatmap(as_maps(a, "a")), heatmap(as_maps(b, "b"))
    if a.shape != b.shape:
        raise BadInput(f"maps differ in shape: a is {a.shape}, b is {b.shape} (channels collapsed)",
                       "compare explanations of the same inputs")
    return a, b


def _data_range(a: np.ndarray, b: np.ndarray, data_range) -> np.ndarray:
    """One range a sample: the one given, or the spread of the pair's values."""
    if data_range is None:
        return np.maximum(a.max(axis=(1, 2)), b.max(axis=(1, 2))) - np.minimum(a.min(axis=(1, 2)), b.min(axis=(1, 2)))
    if isinstance(data_range, bool) or not isinstance(data_range, numbers.Real) or not data_range > 0:
        raise BadOption(f"data_range={data_range!r}", "use a positive number, or None for each pair's own range")
    return np.full(len(a), float(data_range))
