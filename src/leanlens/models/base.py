"""What a model is to leanlens: something that maps a batch to class scores.

Every part of leanlens takes a `Model`. Adapters (PyTorch, ONNX Runtime) implement it;
`wrap()` picks the adapter for a user's object.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

GRADIENTS = "gradients"  # the model can be differentiated with respect to its input
LAYERS = "layers"  # intermediate activations can be read (CAM methods)
BLACK_BOX = "black-box"  # only predict() is available; every model has it


@runtime_checkable
class Model(Protocol):
    """The one interface every part of leanlens takes."""

    framework: str
    capabilities: frozenset[str]

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class scores (logits or probabilities), batch first, as float32 NumPy."""
        ...
