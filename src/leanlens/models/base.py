"""What a model is to leanlens: the two protocols every adapter implements.

`Model` is the forward-only contract every model meets (a black box). A model that can
also be differentiated declares the `GRADIENTS` capability (and `LAYERS` for CAM methods)
and implements `DifferentiableModel`: the adapter itself computes input gradients and
layer gradients, so `leanlens.explain` keeps only the method logic (quadrature, chunking,
targets, noise) and never touches a framework's module. Tensors inside `explain` are
torch tensors; an adapter for another framework converts at its own boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

GRADIENTS = "gradients"  # the model implements DifferentiableModel's input gradients
LAYERS = "layers"  # ...and its layer activations and gradients (CAM methods)
BLACK_BOX = "black-box"  # only predict() is available; every model has it

Pick = Callable[["torch.Tensor"], "torch.Tensor"]  # scores (N, classes) -> one class index a sample


@runtime_checkable
class Model(Protocol):
    """The one interface every part of leanlens takes: a batch in, class scores out."""

    framework: str  # for messages and reports only: nothing routes on it
    capabilities: frozenset[str]  # BLACK_BOX, plus GRADIENTS and LAYERS where implemented

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class scores (logits or probabilities), (N, classes) float32, `batch_size` samples a pass.

        Scores, not labels: where scikit-learn's `predict` gives classes, take
        `predict(x).argmax(1)` here (scikit-learn's `predict_proba` is the closer peer).
        """
        ...


@runtime_checkable
class DifferentiableModel(Model, Protocol):
    """A model whose adapter computes gradients itself (capability GRADIENTS, LAYERS for the layer part).

    `fold_bn=True` lets the adapter run an equivalent network with batch norms folded away;
    `create_graph=True` keeps the graph, so a loss on the result reaches the weights.
    """

    stand_in: bool  # True when gradients come from a stand-in that only approximates
    # predict() (an ONNX graph's torch twin): the predicted class and black-box methods
    # then use predict(), the deployed model's own scores.

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype:
        """The float type inputs are cast to (float32 unless the model's weights are, say, float64)."""
        ...

    def to_tensor(self, x) -> torch.Tensor:
        """A NumPy batch or tensor on the model's device, in its float type."""
        ...

    def inference(self, freeze: bool = True) -> AbstractContextManager:
        """Eval mode (and, with `freeze`, no weight gradients) inside the block, restored on exit."""
        ...

    def scores(self, x: torch.Tensor, *, fold_bn: bool = False) -> torch.Tensor:
        """(N, classes) scores of the differentiated function, without a graph."""
        ...

    def input_gradients(self, x: torch.Tensor, pick: Pick, *, create_graph: bool = False,
                        fold_bn: bool = False) -> torch.Tensor:
        """Gradient of each sample's picked score with respect to its input; `pick` sees the scores."""
        ...

    def default_layer(self, x: torch.Tensor) -> str:
        """The layer CAM methods use when none is named (the last spatial one), LAYERS only."""
        ...

    def layer_gradients(self, x: torch.Tensor, pick: Pick, layer: str, *, create_graph: bool = False,
                        fold_bn: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The named layer's (N, C, H, W) activations and the picked scores' gradients there, LAYERS only."""
        ...
