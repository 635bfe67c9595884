"""Structured pruning that removes whole channels, so the model really gets smaller."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn

from leanlens.compression import surgery
from leanlens.compression.checks import (
    check_labels,
    fraction,
    same_trainability,
    torch_model,
)
from leanlens.compression.criteria import lookup
from leanlens.data import Dataset, as_dataset
from leanlens.errors import BadInput, BadOption
from leanlens.explain.options import positive_int
from leanlens.models.torch_model import TorchModel


def prune(model, data, ratio: float = 0.5, criterion: str = "taylor", round_to: int | None = 8, *,
          batches: int = 8, batch_size: int = 64, protect=(), seed: int = 0) -> TorchModel:
    """A copy of `model` with `ratio` of each prunable layer's channels removed, in one shot.

    Channels coupled through residual additions are scored and removed together
    (torch-pruning's dependency graph). The layers that produce the model's output keep
    their width, and so do the layers named in `protect`. `round_to` keeps widths multiples
    of that number, which fast kernels prefer. The input model is not changed, and the copy
    keeps its parameters' `requires_grad`. Data-driven criteria read up to `batches` batches.
    For pruning to a budget with recovery, use `compress`.
    """
    model = torch_model(model, "prune")
    ratio = fraction("ratio", ratio)
    batches = positive_int("batches", batches, "use a positive int such as 8")
    batch_size = positive_int("batch_size", batch_size, "use a positive int such as 64")
    plan = Pruning(model.module, as_dataset(data), criterion, round_to, protect, "prune")
    widths = plan.widths()
    keep = surgery.target_widths(widths, dict.fromkeys(widths, ratio), plan.round_to)
    if keep == widths:
        _refuse_no_change(widths, ratio, plan.round_to)
    plan.cut(keep, batches=batches, batch_size=batch_size, seed=seed)
    return TorchModel(plan.module)


class Pruning:
    """A private copy of a module being pruned, with what stays fixed across steps: the
    example input, the protected layers (output layers and `protect=`), the criterion."""

    def __init__(self, module: nn.Module, data: Dataset, criterion: str, round_to: int | None,
                 protect, verb: str):
        self.criterion = lookup(criterion)  # a misspelt name is reported before any work
        surgery.refuse_unprunable(module, verb)
        if next(module.parameters(), None) is None:
            raise BadInput(f"{verb}() got a model without parameters", "pass a model with conv or linear layers")
        self.module = copy.deepcopy(module).eval()
        check_labels(self.module, data)
        self.trainable = {name: p.requires_grad for name, p in self.module.named_parameters()}
        self.data = data
        self.round_to = None if round_to is None else positive_int(
            "round_to", round_to, "use a positive int such as 8, or None")
        self.example = torch.as_tensor(data.x[:1], device=next(self.module.parameters()).device)
        self.graph = surgery.dependency_graph(self.module, self.example)
        names = {layer: name for name, layer in self.module.named_modules()}
        protected = surgery.named_layers(self.module, protect, "protect")
        # Names, not modules: fine-tuning hands back a new copy of the module.
        self.kept_names = [names[layer] for layer in (*surgery.output_layers(self.graph), *protected)]
        same_trainability(self.module, self.trainable)

    @property
    def kept(self) -> list[nn.Module]:
        """The layers whose width never changes: those producing the output, and `protect=`."""
        return [self.module.get_submodule(name) for name in self.kept_names]

    def adopt(self, module: nn.Module) -> None:
        """Continue from `module` (a fine-tuned copy of this plan's module)."""
        self.module = module.eval()
        self.trainable = {name: p.requires_grad for name, p in self.module.named_parameters()}
        self.graph = surgery.dependency_graph(self.module, self.example)
        same_trainability(self.module, self.trainable)

    def widths(self) -> dict[str, int]:
        """Output width of every prunable layer group, by its root layer's name."""
        widths = surgery.prunable_widths(self.module, self.graph, self.kept)
        if not widths:
            raise BadInput("the model has no conv or linear layer to prune besides the layers that "
                           "produce its output and those protected", "prune a model with hidden layers, "
                           "or protect fewer layers")
        return widths

    def scorer(self, *, batches: int, batch_size: int, seed: int):
        """The criterion's importance of the module now, read from `batches` batches of the data."""
        for parameter in self.module.parameters():  # the graph and gradients need them all
            parameter.requires_grad_(True)
        return self.criterion(self.module, self._batches(batches, batch_size), seed)

    def cut(self, keep: Mapping[str, int], *, batches: int, batch_size: int, seed: int, scorer=None) -> None:
        """Narrow the module in place to the widths `keep`, scoring channels on the data now
        (or with `scorer`, an importance this plan's `scorer()` gave for the module as it is)."""
        score = self.scorer(batches=batches, batch_size=batch_size, seed=seed) if scorer is None else scorer
        surgery.remove_channels(self.module, self.graph, score, keep, self.kept)
        self.module.zero_grad(set_to_none=True)
        self.graph = surgery.dependency_graph(self.module, self.example)
        same_trainability(self.module, self.trainable)

    def _batches(self, count: int, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # In order, not shuffled: the same model and data give the same scores.
        device = self.example.device
        for i, (x, y) in enumerate(self.data.batches(size)):
            if i == count:
                return
            yield torch.as_tensor(x, device=device), torch.as_tensor(np.asarray(y), device=device)


def _refuse_no_change(widths: dict[str, int], ratio: float, round_to: int | None) -> None:
    name = min(widths, key=widths.get)
    hint = f"use a smaller round_to (at most {max(1, widths[name] // 2)}) or round_to=None" if round_to else "use a larger ratio"
    raise BadOption(f"ratio={ratio} with round_to={round_to} removes no channel: "
                    f"the narrowest layer {name!r} has {widths[name]}", hint)
