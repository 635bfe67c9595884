"""Turning what callers hand to the metrics into checked float64 numpy arrays."""

from __future__ import annotations

import numpy as np

from leanlens.errors import BadInput


def as_numpy(x, what: str) -> np.ndarray:
    """Any array-like (numpy, torch tensor, nested lists) as a numpy array."""
    if hasattr(x, "detach"):
        # torch tensors: leave the graph and the device before numpy sees them
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise BadInput(f"{what} has dtype {arr.dtype}, not a number",
                       "pass a numeric array")
    return arr


def flat(x: np.ndarray) -> np.ndarray:
    """(N, ...) as (N, features); unlike reshape(N, -1) this also works for N == 0."""
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))


def as_maps(x, what: str) -> np.ndarray:
    """A batch-first numeric array of finite values, as float64."""
    arr = as_numpy(x, what)
    if arr.ndim < 2:
        raise BadInput(f"{what} has shape {arr.shape}, expected (N, ...) batch first",
                       "add a batch axis, e.g. x[None]")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise BadInput(f"{what} contains nan or inf",
                       "check the explanation method for overflow")
    return arr


def as_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two maps of the same shape, flattened to (N, features)."""
    a, b = as_maps(a, "a"), as_maps(b, "b")
    if a.shape != b.shape:
        raise BadInput(f"shapes differ: a is {a.shape}, b is {b.shape}",
                       "compare explanations of the same inputs")
    a, b = flat(a), flat(b)
    if a.shape[1] == 0:
        raise BadInput(f"maps of shape {a.shape} have no features",
                       "pass non-empty maps")
    return a, b
