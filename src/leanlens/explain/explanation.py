"""`Explanation`: the result of one attribution method on one batch."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leanlens.errors import BadInput


@dataclass(frozen=True)
class Explanation:
    """Attributions for a batch, kept raw (never normalised here).

    `values` has the input's shape, or, for CAM methods, the input's spatial grid
    (N, H, W) upsampled from `layer_values`, the map at the layer's own resolution.
    """

    values: np.ndarray
    method: str
    target: np.ndarray
    predictions: np.ndarray
    options: Mapping[str, Any] = field(default_factory=dict)
    delta: np.ndarray | None = None
    layer_values: np.ndarray | None = None
    score: np.ndarray | None = None  # one number a sample, e.g. LIME's fit R²

    def __len__(self) -> int:
        return len(self.values)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def to_npz(self, path: str | os.PathLike) -> Path:
        """Save as arrays plus a JSON header; loading never unpickles."""
        arrays = {"values": self.values, "target": self.target, "predictions": self.predictions}
        if self.delta is not None:
            arrays["delta"] = self.delta
        if self.layer_values is not None:
            arrays["layer_values"] = self.layer_values
        if self.score is not None:
            arrays["score"] = self.score
        header = json.dumps({"method": self.method, "options": _jsonable(self.options)})
        path = Path(path)
        if path.suffix != ".npz":  # NumPy would add it silently; return the file really written
            path = path.with_name(path.name + ".npz")
        np.savez_compressed(path, header=np.frombuffer(header.encode(), dtype=np.uint8), **arrays)
        return path

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> Explanation:
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError) as error:
            raise BadInput(f"cannot read explanation file {str(path)!r}: {error}", "save it with to_npz()") from None
        if "header" not in arrays or "values" not in arrays:
            raise BadInput(f"{str(path)!r} is not a leanlens explanation", "save it with to_npz()")
        header = json.loads(arrays.pop("header").tobytes().decode())
        return cls(method=header["method"], options=header["options"], **arrays)


def _jsonable(options: Mapping[str, Any]) -> dict:
    """Options as JSON; arrays (e.g. a baseline) are summarised, not stored."""
    out = {}
    for key, value in options.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = f"<{type(value).__name__}>"
    return out
