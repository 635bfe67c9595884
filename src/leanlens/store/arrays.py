"""Arrays as (dtype, shape JSON, raw bytes) rows: plain data, never pickle."""

from __future__ import annotations

import json
import math

import numpy as np

from leanlens.errors import BadInput

# object arrays would need pickle; void (structured) dtypes lose their fields in
# dtype.str, so neither can be stored as plain bytes
_REFUSED_KINDS = "OV"


def to_numpy(x) -> np.ndarray:
    """Any array-like (numpy, torch tensor, lists) as a numpy array."""
    if hasattr(x, "detach"):
        # torch tensors: leave the graph and the device first
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def encode(x, what: str = "array") -> tuple[str, str, bytes]:
    """(dtype string, shape as JSON, C-order bytes) for one array."""
    arr = to_numpy(x)
    if arr.dtype.hasobject or arr.dtype.kind in _REFUSED_KINDS:
        raise BadInput(f"{what} has dtype {arr.dtype}, which cannot be stored without pickle",
                       "convert it to a numeric or bool array")
    # dtype.str keeps the byte order ('<f4'), so a file moves between machines
    return arr.dtype.str, json.dumps(list(arr.shape)), arr.tobytes(order="C")


def decode(dtype: str, shape: str, data: bytes) -> np.ndarray:
    """Rebuild an array written by :func:`encode` (a writable copy)."""
    dt = np.dtype(dtype)
    dims = tuple(json.loads(shape))
    if dt.hasobject or dt.kind in _REFUSED_KINDS:
        raise BadInput(f"stored array has dtype {dt}, which leanlens never writes",
                       "the store file was changed outside leanlens")
    if math.prod(dims) * dt.itemsize != len(data):
        raise BadInput(f"stored array of shape {dims} and dtype {dt} has {len(data)} bytes",
                       "the store file is damaged")
    return np.frombuffer(data, dtype=dt).reshape(dims).copy()
