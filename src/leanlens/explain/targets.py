"""Which class each sample is explained for, settled from the scores a method computes anyway.

`explain()` checks what it can before any forward pass (dtype, one target a sample);
a method then hands the scores of its first forward on the clean batch to
`Targets.pick()`, which fills in predicted classes and checks the range. No forward
pass is spent only to find the predicted class.
"""

from __future__ import annotations

import numpy as np
import torch

from leanlens.errors import BadInput
from leanlens.models.base import GRADIENTS


class Targets:
    """The requested targets of a batch, resolved against the model's scores on first use."""

    def __init__(self, requested, n: int):
        self.n = n
        self.requested = _check_requested(requested, n)
        self.scores: torch.Tensor | None = None  # the model's scores on the clean batch, (N, classes)
        self.resolved: torch.Tensor | None = None  # one class index a sample
        self._seen: torch.Tensor | None = None

    def pick(self, scores: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Class indices of rows `start:start + len(scores)`, given their clean-batch scores.

        A method that runs the batch in chunks calls this once a chunk.
        """
        chosen = _resolve(None if self.requested is None else self.requested[start : start + len(scores)], scores)
        if self.scores is None:
            self.scores = torch.zeros((self.n, scores.shape[1]), device=scores.device)
            self.resolved = torch.zeros(self.n, dtype=torch.long, device=scores.device)
            self._seen = torch.zeros(self.n, dtype=torch.bool, device=scores.device)
        rows = slice(start, start + len(scores))
        self.scores[rows], self.resolved[rows], self._seen[rows] = scores.detach().float(), chosen, True
        return chosen

    @property
    def complete(self) -> bool:
        return self._seen is not None and bool(self._seen.all())

    def indices(self) -> np.ndarray:
        if not self.complete:
            raise RuntimeError("targets read before every sample was scored: a method skipped pick()")
        return self.resolved.cpu().numpy()


def _check_requested(target, n: int) -> np.ndarray | None:
    if target is None:
        return None
    if hasattr(target, "detach"):
        target = target.detach().cpu().numpy()
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.integer):
        raise BadInput(f"target must be class indices, got dtype {t.dtype}", "pass an int or a sequence of ints")
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,):
        raise BadInput(f"target has shape {t.shape} for {n} samples", f"pass one int, or a flat sequence of {n} ints")
    if (t < 0).any():
        raise BadInput(f"target {int(t[t < 0][0])} is negative", "use class indices from 0")
    return t.astype(np.int64)


def _resolve(requested: np.ndarray | None, scores: torch.Tensor) -> torch.Tensor:
    if scores.dim() != 2:
        raise BadInput(f"the model returns scores of shape {tuple(scores.shape)}", "explain a model that returns (N, classes)")
    classes = scores.shape[1]
    if requested is None:
        return scores.argmax(dim=1)
    too_big = requested >= classes
    if too_big.any():
        raise BadInput(f"target {int(requested[too_big][0])} is out of range for a model with {classes} classes",
                       f"use 0..{classes - 1}")
    return torch.as_tensor(requested, device=scores.device)


def picked_scores(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The score of each sample's target class, one a sample."""
    return scores.gather(1, target[:, None])[:, 0]


def runs_own_forward(model) -> bool:
    """Whether the model's differentiable forward is the deployed model itself (a torch module),
    so its tensors can stay on the device; otherwise scores come from `predict()`."""
    return GRADIENTS in model.capabilities and not model.stand_in


def class_scores(model, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The model's scores for a batch, without gradients, on `x`'s device (float32, or float64
    for a float64 model).

    Black-box methods see the real deployed model: a model whose gradients come from a
    stand-in (an ONNX int8 graph's twin) is scored by `predict()`.
    """
    step = batch_size or len(x) or 1
    if runs_own_forward(model):
        scores = torch.cat([model.scores(x[i : i + step]) for i in range(0, len(x), step)])
        return scores.to(torch.promote_types(scores.dtype, torch.float32))
    scores = model.predict(x.detach().cpu().numpy(), batch_size=step)
    return torch.as_tensor(scores, dtype=torch.float32, device=x.device)
