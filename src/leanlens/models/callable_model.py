"""The forward-only adapter: any Python function from a NumPy batch to class scores.

A scikit-learn pipeline's `predict_proba`, a REST client, a Keras model's `predict`: each is a
black box to leanlens, explained by the methods that only need forward passes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leanlens.errors import BadInput
from leanlens.models.base import BLACK_BOX


class CallableModel:
    """`fn(x: np.ndarray) -> scores (N, classes)` as a leanlens `Model` (black box only).

    The function receives batches of what the user explains: arrays, or DataFrames with the
    user's columns and dtypes when a DataFrame was passed (see `leanlens.models.tables`).
    """

    framework = "callable"
    capabilities = frozenset({BLACK_BOX})
    takes_frames = True

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]):
        self.fn = fn

    def __repr__(self) -> str:
        return f"CallableModel({getattr(self.fn, '__qualname__', type(self.fn).__name__)})"

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class scores (N, classes), not labels: `predict(x).argmax(1)` gives the classes."""
        if len(x) == 0:
            raise BadInput("predict() got an empty batch", "pass at least one sample")
        return np.concatenate([self._scores(x[start : start + batch_size]) for start in range(0, len(x), batch_size)])

    def _scores(self, chunk: np.ndarray) -> np.ndarray:
        scores = np.asarray(self.fn(chunk))
        if scores.dtype == object or not np.issubdtype(scores.dtype, np.number) or np.iscomplexobj(scores):
            raise BadInput(f"the model function returned {scores.dtype} values, not real scores",
                           "return a float array of shape (N, classes)")
        if scores.ndim != 2 or len(scores) != len(chunk):
            raise BadInput(f"the model function returned shape {scores.shape} for {len(chunk)} samples",
                           "return scores of shape (N, classes); for one output use scores[:, None]")
        return scores.astype(np.float32, copy=False)
