"""Turning stored arrays into displayable pictures: numpy only, no drawing.

Everything here is for display: values are rescaled, never fed back to a metric.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import binary_erosion

# probe images are often tiny (16x16, 28x28); blow them up to about this many
# pixels so they are legible without relying on the browser's blurry upscaling
DISPLAY_PIXELS = 128


def minmax(a: np.ndarray) -> np.ndarray:
    """a rescaled to [0, 1]; a flat (or all-NaN) map becomes all zeros."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 0:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


def display_image(x: np.ndarray) -> np.ndarray:
    """One probe sample as (H, W) gray or (H, W, 3) color, in [0, 1].

    Accepts (H, W), (1, H, W), (3, H, W) or (C, H, W); other channel counts are
    averaged to gray because there is no faithful way to show them as color.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3 and x.shape[0] == 3:
        # one scale for all channels, so the colors keep their balance
        return minmax(np.moveaxis(x, 0, -1))
    if x.ndim == 3:
        x = x.mean(axis=0)
    return minmax(x)


def to_gray(img: np.ndarray) -> np.ndarray:
    """(H, W) luminance of a display image (gray passes through)."""
    if img.ndim == 2:
        return img
    return img @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma weights


def resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """a resampled to (H, W) by nearest neighbour, e.g. a coarse map onto its image."""
    if a.shape[:2] == tuple(shape):
        return a
    rows = (np.arange(shape[0]) * a.shape[0] // shape[0]).clip(0, a.shape[0] - 1)
    cols = (np.arange(shape[1]) * a.shape[1] // shape[1]).clip(0, a.shape[1] - 1)
    return a[rows][:, cols]


def upscale_factor(shape: tuple[int, ...]) -> int:
    """Integer zoom that brings the longer side to about DISPLAY_PIXELS."""
    return max(1, math.ceil(DISPLAY_PIXELS / max(shape[0], shape[1])))


def upscale(a: np.ndarray, factor: int) -> np.ndarray:
    """Integer nearest-neighbour zoom of the first two axes (keeps pixels honest)."""
    if factor == 1:
        return a
    return np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)


def outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    """The inner border of a boolean mask, `thickness` pixels wide."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask
    # border_value=0 counts the image edge as outside, so objects touching it are closed
    inner = binary_erosion(mask, iterations=thickness, border_value=0)
    return mask & ~inner
