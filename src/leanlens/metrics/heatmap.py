"""One way to turn an explanation into a per-pixel heat map, used by every reader."""

from __future__ import annotations

import numpy as np

from leanlens.errors import BadInput


def heatmap(values: np.ndarray) -> np.ndarray:
    """(N, H, W) maps from `(N, H, W)` values (CAM methods) or `(N, C, H, W)` ones.

    Channels are collapsed as the sum of their magnitudes. The sign of a per-channel
    attribution says in which direction that colour moved the score, not whether the pixel
    mattered: a signed sum lets a pixel whose red pushes up and green pushes down cancel to
    zero and vanish from the map, which the L1 sum never does. Maps that are already
    spatial (Grad-CAM's), and single-channel ones (a grey image's IG), keep their sign: with
    one channel there is nothing to cancel, and (N, 1, H, W) must score as (N, H, W) does.
    """
    values = np.asarray(values)
    if values.ndim == 3:
        return values
    if values.ndim == 4 and values.shape[1] == 1:
        return values[:, 0]
    if values.ndim == 4:
        return np.abs(values).sum(axis=1)
    raise BadInput(f"values have shape {values.shape}, expected (N, H, W) or (N, C, H, W)",
                   "pass one map per input image")
