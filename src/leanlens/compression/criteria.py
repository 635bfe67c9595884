"""Pruning criteria: how to score each channel before structural removal.

A criterion is a function registered under its name. Given the module as it is now (in eval
mode) and a few training batches, it returns a scorer: a torch-pruning importance, which maps
one channel group (the tensors that shrink together) to one score a channel; the lowest go.
`compress` calls the criterion again before every step, so data-driven scores are always
those of the current weights, as pruned and fine-tuned so far.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from leanlens.compression.surgery import ROOTS
from leanlens.errors import UnknownMethod, closest

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Criterion = Callable[[nn.Module, Batches, int], Callable]
CRITERIA: dict[str, Criterion] = {}

# The pruning functions that remove a layer's output channels (the others remove inputs).
OUT_CHANNELS = (tp.pruner.function.prune_conv_out_channels, tp.pruner.function.prune_linear_out_channels)


def criterion(name: str) -> Callable[[Criterion], Criterion]:
    def register(fn: Criterion) -> Criterion:
        CRITERIA[name] = fn
        return fn
    return register


def lookup(name: str) -> Criterion:
    """The criterion registered as `name` (UnknownMethod with the closest names otherwise)."""
    if not isinstance(name, str) or name not in CRITERIA:
        raise UnknownMethod(f"unknown pruning criterion {name!r}", closest(str(name), CRITERIA))
    return CRITERIA[name]


def scorer(name: str, module: nn.Module, batches: Batches, seed: int = 0):
    """The scorer of criterion `name` for `module` now, from `batches` of (x, y) tensors."""
    return lookup(name)(module, batches, seed)


@criterion("magnitude")
def magnitude(module: nn.Module, batches: Batches, seed: int):
    """L1 norm of the channel's weights across its group (Li et al., 2017): needs no data."""
    return tp.importance.MagnitudeImportance(p=1)


@criterion("taylor")
def taylor(module: nn.Module, batches: Batches, seed: int):
    """|w · ∂L/∂w| over the group: the first-order change of the loss (Molchanov et al., 2019)."""
    module.zero_grad(set_to_none=True)
    for x, y in batches:
        F.cross_entropy(module(x), y).backward()
    return tp.importance.TaylorImportance()


@criterion("attribution")
def attribution(module: nn.Module, batches: Batches, seed: int):
    """Mean |activation × gradient| of the true class's score at the channel's output: how much
    of the decision the channel carries on real inputs (explanation-guided pruning, in the
    spirit of Yeom et al., 2021)."""
    return LayerScores(activation_relevance(module, batches))


@criterion("random")
def random(module: nn.Module, batches: Batches, seed: int):
    """Uniform random scores from `seed`: the control every criterion must beat."""
    return SeededRandom(seed)


def activation_relevance(module: nn.Module, batches: Batches) -> dict[nn.Module, torch.Tensor]:
    """Per layer, one relevance a channel: |a · ∂s_y/∂a| averaged over samples and positions."""
    layers = [m for m in module.modules() if isinstance(m, ROOTS)]
    outputs: dict[nn.Module, list[torch.Tensor]] = {}
    handles = [layer.register_forward_hook(lambda m, i, o: outputs.setdefault(m, []).append(o)) for layer in layers]
    totals: dict[nn.Module, torch.Tensor] = {}
    samples = 0
    try:
        for x, y in batches:
            outputs.clear()
            scores = module(x)
            true_class = scores.gather(1, y[:, None]).sum()
            seen = [(layer, out) for layer, outs in outputs.items() for out in outs]
            grads = torch.autograd.grad(true_class, [out for _, out in seen], allow_unused=True)
            for (layer, out), grad in zip(seen, grads):
                if grad is None:  # a layer off the path to the scores carries no relevance
                    continue
                relevance = (out * grad).abs().transpose(0, 1).flatten(1).mean(1) * len(x)
                totals[layer] = totals.get(layer, 0) + relevance.detach()
            samples += len(x)
    finally:
        for handle in handles:
            handle.remove()
    return {layer: total / samples for layer, total in totals.items()}


class LayerScores(tp.importance.Importance):
    """A torch-pruning importance from fixed per-layer channel scores: a group's score is the
    sum over its layers whose outputs it removes."""

    def __init__(self, scores: dict[nn.Module, torch.Tensor]):
        self.scores = scores

    @torch.no_grad()
    def __call__(self, group):
        total = None
        for i, (dep, idxs) in enumerate(group):
            layer_scores = self.scores.get(dep.target.module)
            if dep.handler not in OUT_CHANNELS or layer_scores is None:
                continue
            total = torch.zeros(len(group[0].idxs)) if total is None else total
            root = torch.as_tensor(group[i].root_idxs)
            total.scatter_add_(0, root, layer_scores[idxs].float().cpu())
        return total


class SeededRandom(tp.importance.Importance):
    """Random scores that the same seed repeats (torch-pruning's RandomImportance draws from
    torch's global generator, which the rest of the program moves)."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, group):
        return torch.rand(len(group[0].idxs), generator=self.generator)
