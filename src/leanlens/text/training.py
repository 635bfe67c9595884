"""Training a text classifier's head on CPU in seconds: the encoder stays frozen, so each text's
pooled embedding is computed once and the head is fitted on those (a logistic regression)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from leanlens.data import as_dataset
from leanlens.errors import BadInput, BadOption
from leanlens.explain.options import positive_int, real
from leanlens.text.classifier import TextClassifier


def train_head(classifier: TextClassifier, data, *, weight_decay: float = 1e-3, max_iter: int = 200,
               batch_size: int = 64, on_step: Callable[[int, int], None] | None = None) -> TextClassifier:
    """A copy of `classifier` whose linear head is fitted to `data` (token ids and labels).

    The loss is cross-entropy plus `weight_decay` × the squared head weights, minimised with
    L-BFGS for at most `max_iter` iterations: deterministic, and convex, so the optimum does not
    depend on a seed. `on_step(done, total)` follows the embedding batches, for progress bars.
    The encoder's weights are not changed; the input classifier is not changed at all.
    """
    if not isinstance(classifier, TextClassifier):
        raise BadInput(f"train_head() takes a leanlens TextClassifier, got {type(classifier).__name__}",
                       "build one with leanlens.text.TextClassifier(encoder)")
    weight_decay = real("weight_decay", weight_decay, "use a number >= 0, e.g. 1e-3", low=0.0)
    max_iter = positive_int("max_iter", max_iter, "use a positive int such as 200")
    batch_size = positive_int("batch_size", batch_size, "use a positive int such as 64")
    data = as_dataset(data)
    classes = classifier.head.out_features
    if data.y.min() < 0 or data.y.max() >= classes:
        raise BadInput(f"labels run {data.y.min()}..{data.y.max()} but the head has {classes} classes",
                       f"fix y, or build the TextClassifier with classes={int(data.y.max()) + 1}")
    trained = copy.deepcopy(classifier).eval()
    features = pooled_features(trained, data.x, batch_size, on_step)
    _fit_linear(trained.head, features, torch.as_tensor(data.y), weight_decay, max_iter)
    return trained


def pooled_features(classifier: TextClassifier, ids: np.ndarray, batch_size: int = 64,
                    on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """The pooled encoder output (N, hidden) of every row of `ids`, batch by batch, without gradients."""
    total = int(np.ceil(len(ids) / batch_size))
    chunks = []
    with torch.no_grad():
        for step, start in enumerate(range(0, len(ids), batch_size), 1):
            batch = torch.as_tensor(ids[start:start + batch_size])
            chunks.append(classifier.pooled(_without_padding_columns(batch, classifier.pad_id)))
            if on_step is not None:
                on_step(step, total)
    return torch.cat(chunks)


def _without_padding_columns(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """`ids` cut after the last column any row uses: masked padding changes no pooled value, and
    single words padded to 16 tokens otherwise cost the encoder four times their length."""
    used = (ids != pad_id).any(0).nonzero()
    return ids[:, : int(used.max()) + 1] if len(used) else ids


def _fit_linear(head: torch.nn.Linear, features: torch.Tensor, labels: torch.Tensor, weight_decay: float,
                max_iter: int) -> None:
    # centred and scaled to unit variance overall, L-BFGS converges in few steps; the scaling is folded
    # back into the head afterwards. One scale for all dimensions, not one each: the encoder has
    # near-constant dimensions, whose tiny spread would turn into huge weights that int8 rounding of
    # the pooled embedding then multiplies into wrong scores.
    mean, std = features.mean(0), features.std().clamp(min=1e-6)
    standard = (features - mean) / std
    weight = torch.zeros(head.out_features, features.shape[1], requires_grad=True)
    bias = torch.zeros(head.out_features, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = F.cross_entropy(standard @ weight.T + bias, labels) + weight_decay * weight.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    if not torch.isfinite(weight).all():
        raise BadOption("the head's training diverged", "raise weight_decay, e.g. weight_decay=1e-2")
    with torch.no_grad():
        head.weight.copy_(weight / std)
        head.bias.copy_(bias - (weight / std) @ mean)
