"""Checks shared by prune, quantize and fine-tune: what they take, refused in one line each."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from leanlens.data import Dataset, as_dataset
from leanlens.errors import BadInput, BadOption
from leanlens.explain.options import positive_int, real
from leanlens.models.torch_model import SHAPE_ERRORS, TorchModel, not_fitting
from leanlens.models.wrap import wrap


def torch_model(model, verb: str) -> TorchModel:
    """`model` as a TorchModel: compression rewrites torch modules, not exported graphs."""
    model = wrap(model)
    if not isinstance(model, TorchModel):
        raise BadInput(f"{verb}() needs a PyTorch model, got a {model.framework} model", f"{verb} before exporting")
    return model


def fraction(name: str, value) -> float:
    """A number strictly between 0 and 1 (bools, strings and NaN refused)."""
    number = real(name, value, f"use a fraction, 0 < {name} < 1")
    if not 0.0 < number < 1.0:
        raise BadOption(f"{name}={value!r}", f"use a fraction, 0 < {name} < 1")
    return number


def first_scores(module: nn.Module, x: np.ndarray) -> torch.Tensor:
    """The module's output on one sample, checked before any compression step runs it: a batch
    it refuses (wrong rank or channel count) or an output that is not a scores tensor is one line."""
    try:
        with torch.no_grad():
            scores = module(torch.as_tensor(x[:1], device=_device(module)))
    except SHAPE_ERRORS as error:
        raise not_fitting(error, tuple(x.shape[1:])) from None
    if not isinstance(scores, torch.Tensor):
        raise BadInput(f"the model returns a {type(scores).__name__}, not a tensor of scores",
                       "compress a module whose forward() returns the scores (N, classes)")
    return scores


def check_labels(module: nn.Module, data: Dataset) -> int:
    """The model's number of classes, after checking every label indexes one of them.

    Cross-entropy would otherwise fail deep inside torch (or read out of bounds on a GPU).
    """
    scores = first_scores(module, data.x)
    if scores.dim() != 2:
        raise BadInput(f"the model returns scores of shape {tuple(scores.shape)}, not (batch, classes)",
                       "train and prune a classifier whose forward() returns one score a class")
    classes = scores.shape[1]
    low, high = int(data.y.min()), int(data.y.max())
    if low < 0 or high >= classes:
        raise BadInput(f"labels run {low}..{high} but the model has {classes} classes (0..{classes - 1})",
                       "fix y, or give the model one output a class")
    return classes


def _device(module: nn.Module) -> torch.device:
    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def same_trainability(module: nn.Module, flags: dict[str, bool]) -> None:
    """Give every parameter of `module` the requires_grad it had under its name in `flags`
    (torch-pruning replaces pruned parameters with new, trainable ones)."""
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(flags.get(name, True))


def calibration_inputs(x: np.ndarray, calibration_samples) -> np.ndarray:
    """The first `calibration_samples` inputs (a positive int: 0 or -12 would slice x wrongly)."""
    count = positive_int("calibration_samples", calibration_samples, "use a positive int such as 256")
    return x[:count]


def labelled(data, why: str) -> Dataset:
    """`data` as a Dataset, refused in one line when it is a bare batch; `why` says what needs labels."""
    if isinstance(data, (np.ndarray, torch.Tensor)):
        raise BadInput(f"{why}, and data is a bare batch without labels", "pass (x, y) or a Dataset")
    return as_dataset(data)
