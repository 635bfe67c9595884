"""Structured pruning that removes whole channels, so the model really gets smaller."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from leanlens.compress.criteria import importance
from leanlens.data import as_dataset
from leanlens.errors import BadInput, BadOption
from leanlens.models.torch_model import TorchModel
from leanlens.models.wrap import wrap


def prune(model, data, ratio: float = 0.5, criterion: str = "taylor", round_to: int | None = 8, *, batches: int = 8, batch_size: int = 64) -> TorchModel:
    """A copy of `model` with `ratio` of each prunable layer's channels removed.

    Channels coupled through residual additions are scored and removed together
    (torch-pruning's dependency graph). The classifier's outputs are kept. `round_to`
    keeps widths multiples of that number, which fast kernels prefer. The input model
    is not changed. Taylor scores come from the loss gradient on up to `batches` batches.
    """
    model = wrap(model)
    if not isinstance(model, TorchModel):
        raise BadInput(f"prune() needs a PyTorch model, got a {model.framework} model", "prune before exporting")
    if not 0.0 < ratio < 1.0:
        raise BadOption(f"ratio={ratio!r}", "use a fraction of channels to remove, 0 < ratio < 1")
    if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
        raise BadOption(f"round_to={round_to!r}", "use a positive int such as 8, or None")
    data = as_dataset(data)
    scorer, needs_gradients = importance(criterion)
    module = copy.deepcopy(model.module).eval()
    device = next(module.parameters()).device
    example = torch.as_tensor(data.x[:1], device=device)
    pruner = tp.pruner.BasePruner(
        module, example, importance=scorer, pruning_ratio=ratio, round_to=round_to,
        ignored_layers=_classifier_layers(module, example),
    )
    if needs_gradients:
        _accumulate_loss_gradients(module, data, batches, batch_size, device)
    pruner.step()
    module.zero_grad(set_to_none=True)
    return TorchModel(module)


def _classifier_layers(module: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The layers producing the output: their out channels are the classes."""
    with torch.no_grad():
        classes = module(example).shape[-1]
    return [m for m in module.modules() if isinstance(m, nn.Linear) and m.out_features == classes]


def _accumulate_loss_gradients(module, data, batches, batch_size, device) -> None:
    # Eval mode so that batch statistics do not move while we only score channels.
    module.zero_grad(set_to_none=True)
    for i, (x, y) in enumerate(data.batches(batch_size)):
        if i == batches:
            break
        loss = F.cross_entropy(module(torch.as_tensor(x, device=device)), torch.as_tensor(y, device=device))
        loss.backward()
