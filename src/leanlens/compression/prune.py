"""Structured pruning that removes whole channels, so the model really gets smaller."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from leanlens.compression.checks import (
    check_labels,
    fraction,
    same_trainability,
    torch_model,
)
from leanlens.compression.criteria import importance
from leanlens.data import as_dataset
from leanlens.errors import BadInput, BadOption
from leanlens.explain.options import positive_int
from leanlens.models.torch_model import TorchModel

# Layers whose widths torch-pruning's dependency graph cannot change consistently: pruning a
# model holding one fails deep inside it (an LSTM's gates are packed into one weight).
UNPRUNABLE = (nn.RNNBase, nn.MultiheadAttention)


def prune(model, data, ratio: float = 0.5, criterion: str = "taylor", round_to: int | None = 8, *, batches: int = 8, batch_size: int = 64) -> TorchModel:
    """A copy of `model` with `ratio` of each prunable layer's channels removed.

    Channels coupled through residual additions are scored and removed together
    (torch-pruning's dependency graph). The classifier's outputs are kept. `round_to`
    keeps widths multiples of that number, which fast kernels prefer. The input model
    is not changed, and the copy keeps its parameters' `requires_grad`. Taylor scores
    come from the loss gradient on up to `batches` batches.
    """
    model = torch_model(model, "prune")
    ratio = fraction("ratio", ratio)
    if round_to is not None:
        round_to = positive_int("round_to", round_to, "use a positive int such as 8, or None")
    batches = positive_int("batches", batches, "use a positive int such as 8")
    batch_size = positive_int("batch_size", batch_size, "use a positive int such as 64")
    data = as_dataset(data)
    scorer, needs_gradients = importance(criterion)
    _refuse_unprunable(model.module)
    module = copy.deepcopy(model.module).eval()
    check_labels(module, data)
    trainable = {name: p.requires_grad for name, p in module.named_parameters()}
    # torch-pruning traces layers through autograd: frozen parameters would hide them.
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    example = torch.as_tensor(data.x[:1], device=next(module.parameters()).device)
    classifier = _classifier_layers(module, example)
    widths_before = _widths(module, classifier)
    pruner = tp.pruner.BasePruner(
        module, example, importance=scorer, pruning_ratio=ratio, round_to=round_to, ignored_layers=classifier,
    )
    if needs_gradients:
        _accumulate_loss_gradients(module, data, batches, batch_size)
    pruner.step()
    module.zero_grad(set_to_none=True)
    same_trainability(module, trainable)
    if _widths(module, classifier) == widths_before:
        _refuse_no_change(widths_before, ratio, round_to)
    return TorchModel(module)


def _refuse_unprunable(module: nn.Module) -> None:
    for name, layer in module.named_modules():
        if isinstance(layer, UNPRUNABLE):
            raise BadInput(f"prune() cannot remove channels around {type(layer).__name__} layer {name!r}",
                           "prune a model of conv, linear and norm layers, or quantize this one instead")


def _classifier_layers(module: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The layers producing the output: their out channels are the classes."""
    with torch.no_grad():
        classes = module(example).shape[-1]
    return [m for m in module.modules() if isinstance(m, nn.Linear) and m.out_features == classes]


def _widths(module: nn.Module, classifier: list[nn.Module]) -> dict[str, int]:
    """Output channels of every conv and linear layer that pruning may narrow."""
    return {
        name: layer.weight.shape[0] for name, layer in module.named_modules()
        if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)) and not any(layer is c for c in classifier)
    }


def _refuse_no_change(widths: dict[str, int], ratio: float, round_to: int | None) -> None:
    if not widths:
        raise BadInput("the model has no conv or linear layer to prune besides its classifier",
                       "prune a model with hidden layers")
    name = min(widths, key=widths.get)
    hint = f"use a smaller round_to (at most {max(1, widths[name] // 2)}) or round_to=None" if round_to else "use a larger ratio"
    raise BadOption(f"ratio={ratio} with round_to={round_to} removes no channel: "
                    f"the narrowest layer {name!r} has {widths[name]}", hint)


def _accumulate_loss_gradients(module: nn.Module, data, batches: int, batch_size: int) -> None:
    # Eval mode so that batch statistics do not move while we only score channels.
    module.zero_grad(set_to_none=True)
    device = next(module.parameters()).device
    for i, (x, y) in enumerate(data.batches(batch_size)):
        if i == batches:
            break
        loss = F.cross_entropy(module(torch.as_tensor(x, device=device)), torch.as_tensor(y, device=device))
        loss.backward()
