"""Unstructured pruning: zero single weights, keep every shape.

Zeros shrink nothing by themselves: a dense kernel multiplies them like any other value, so a
sparsified model is exactly as fast as the dense one until a sparse kernel runs it. What this
module reports is therefore the sparsity, never a speed-up.

Two schemes:

- ``magnitude``: the smallest |w| across all the layers, one global threshold.
- ``binned``: each layer's weights are grouped into `bins` bins of equal width in |w|, each bin
  is scored by its contribution to the output, and the bins that contribute least per weight are
  zeroed first. A small weight on a large input can matter more than a large one on an input
  that is almost always zero; magnitude cannot see that, the contribution can.

A bin's contribution is the first-order change of the true-class scores when the bin is
zeroed, |Σ_{w∈bin} w · ∂s/∂w|, summed in absolute value over data batches. It is read from
the class scores rather than from the loss: at a trained optimum the loss gradient is close
to zero on average, so loss-based scores would rank bins by noise.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from leanlens.compression.checks import check_labels, fraction, torch_model
from leanlens.data import as_dataset
from leanlens.errors import BadOption, UnknownMethod, closest
from leanlens.explain.options import positive_int
from leanlens.models.torch_model import TorchModel

SCHEMES = ("binned", "magnitude")
SPARSIFIABLE = (nn.Linear, nn.modules.conv._ConvNd)


@dataclass(frozen=True)
class Sparsified:
    """A sparsified copy of a model, and how sparse it is (no speed claim: see the module doc)."""

    model: TorchModel
    scheme: str
    sparsity: float  # zeros / weights, over the layers that were considered
    layers: dict[str, float]  # each considered layer's own share of zeros

    def __repr__(self) -> str:
        return f"Sparsified({self.scheme}, sparsity={self.sparsity:.1%} over {len(self.layers)} layers)"


def sparsify(model, data, sparsity: float = 0.5, *, scheme: str = "binned", bins: int = 32,
             protect: Iterable[str] = (), batches: int = 8, batch_size: int = 64) -> Sparsified:
    """A copy of `model` with at least `sparsity` of its Linear and conv weights set to zero.

    `protect` names layers left dense. `binned` overshoots the target by at most one bin;
    `magnitude` meets it to the weight. `data` supplies the batches that score the bins
    (`batches` of `batch_size`); `magnitude` only checks that it fits the model. The input
    model is not changed. Fine-tuning the result regrows the zeros: sparsify last.
    """
    model = torch_model(model, "sparsify")
    target = fraction("sparsity", sparsity)
    if scheme not in SCHEMES:
        raise UnknownMethod(f"unknown sparsity scheme {scheme!r}", closest(scheme, SCHEMES))
    bins = positive_int("bins", bins, "use an int of at least 2, such as 32")
    if bins < 2:
        raise BadOption(f"bins={bins}", "use an int of at least 2, such as 32")
    data = as_dataset(data)
    module = copy.deepcopy(model.module).eval()
    check_labels(module, data)
    layers = _considered_layers(module, set(protect))
    if scheme == "magnitude":
        _zero_smallest(layers, target)
    else:
        index = {name: _bin_index(layer.weight.detach(), bins) for name, layer in layers.items()}
        contributions = _bin_contributions(module, layers, index, bins, data,
                                           positive_int("batches", batches, "use e.g. 8"),
                                           positive_int("batch_size", batch_size, "use e.g. 64"))
        _zero_binned(layers, index, contributions, target, bins)
    return _report(module, layers, scheme)


def _considered_layers(module: nn.Module, protect: set[str]) -> dict[str, nn.Module]:
    names = {name for name, _ in module.named_modules()}
    unknown = sorted(protect - names)
    if unknown:
        raise BadOption(f"protect names {unknown[0]!r}, which is not a layer of the model",
                        f"use names from model.named_modules(), e.g. {sorted(names - {''})[:3]}")
    layers = {name: layer for name, layer in module.named_modules()
              if isinstance(layer, SPARSIFIABLE) and name not in protect}
    if not layers:
        raise BadOption("no Linear or convolution layer is left to sparsify",
                        "protect fewer layers, or sparsify a model that has such layers")
    return layers


def _zero_smallest(layers: dict[str, nn.Module], target: float) -> None:
    magnitudes = torch.cat([layer.weight.detach().abs().flatten() for layer in layers.values()])
    count = int(np.ceil(target * magnitudes.numel()))
    # ranks, not a threshold: ties at the threshold would zero more than asked
    order = torch.argsort(magnitudes, stable=True)[:count]
    keep = torch.ones_like(magnitudes, dtype=torch.bool)
    keep[order] = False
    start = 0
    with torch.no_grad():
        for layer in layers.values():
            size = layer.weight.numel()
            layer.weight.mul_(keep[start : start + size].view_as(layer.weight))
            start += size


def _bin_index(weight: torch.Tensor, bins: int) -> torch.Tensor:
    """Each weight's bin: `bins` equal widths of |w| from 0 to the layer's largest."""
    magnitude = weight.abs()
    edges = torch.linspace(0, float(magnitude.max()), bins + 1, device=weight.device)
    return torch.bucketize(magnitude, edges[1:-1], right=True)


def _bin_contributions(module, layers, index, bins: int, data, batches: int, batch_size: int) -> dict:
    """Per layer and bin, Σ over batches of |Σ_{w∈bin} w · ∂(sum of true-class scores)/∂w|.
    Each batch is folded in as it comes: no gradient outlives its batch."""
    device = next(module.parameters()).device
    weights = {name: layer.weight for name, layer in layers.items()}
    totals = {name: torch.zeros(bins, dtype=w.dtype, device=w.device) for name, w in weights.items()}
    for i, (x, y) in enumerate(data.batches(batch_size)):
        if i == batches:
            break
        scores = module(torch.as_tensor(x, device=device))
        true_class = scores.gather(1, torch.as_tensor(y, device=device).long().view(-1, 1)).sum()
        grads = torch.autograd.grad(true_class, list(weights.values()), allow_unused=True)
        for (name, weight), grad in zip(weights.items(), grads):
            if grad is not None:
                per_bin = torch.zeros(bins, dtype=weight.dtype, device=weight.device)
                totals[name] += per_bin.scatter_add_(0, index[name].flatten(), (weight.detach() * grad).flatten()).abs()
    return totals


def _zero_binned(layers, index, contributions, target: float, bins: int) -> None:
    """Zero whole bins, those with the least contribution per weight first, until `target` is met."""
    candidates = []  # (contribution per weight, layer name, bin mask)
    total = sum(layer.weight.numel() for layer in layers.values())
    for name in layers:
        counts = torch.bincount(index[name].flatten(), minlength=bins)
        for b in torch.nonzero(counts).flatten().tolist():
            candidates.append((float(contributions[name][b] / counts[b]), name, index[name] == b))
    zeroed = 0
    with torch.no_grad():
        for _, name, mask in sorted(candidates, key=lambda c: c[0]):
            if zeroed >= target * total:
                break
            layers[name].weight[mask] = 0.0
            zeroed += int(mask.sum())


def _report(module: nn.Module, layers: dict[str, nn.Module], scheme: str) -> Sparsified:
    shares = {name: float((layer.weight == 0).float().mean()) for name, layer in layers.items()}
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers.values())
    total = sum(layer.weight.numel() for layer in layers.values())
    return Sparsified(TorchModel(module), scheme, zeros / total, shares)
