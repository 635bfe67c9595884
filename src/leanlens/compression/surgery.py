"""Channel surgery: which layers may shrink, to which widths, and removing the least important channels.

torch-pruning's dependency graph says which tensors must shrink together (a conv's outputs,
the norm after it, the next layer's inputs, both sides of a residual addition); this module
decides how many channels each such group keeps and which ones, so that `prune` (one shot) and
`compress` (steps to a budget) share one way of cutting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
import torch_pruning as tp
from torch import nn

from leanlens.errors import BadInput, BadOption, closest

# Layers whose widths the dependency graph cannot change consistently: pruning a model holding
# one fails deep inside torch-pruning (an LSTM's gates are packed into one weight).
UNPRUNABLE = (nn.RNNBase, nn.MultiheadAttention)
# The layers whose output channels are groups to prune (torch-pruning's "root" layers).
ROOTS = (nn.modules.conv._ConvNd, nn.Linear)
# Graph nodes that mix channels: walking back from the output, the first one met on a path
# decides the output's width. Norms, activations, pooling and depthwise convs pass widths through.
MIXING = {tp.ops.OPTYPE.CONV, tp.ops.OPTYPE.LINEAR, tp.ops.OPTYPE.EMBED}


def refuse_unprunable(module: nn.Module, verb: str) -> None:
    for name, layer in module.named_modules():
        if isinstance(layer, UNPRUNABLE):
            raise BadInput(f"{verb}() cannot remove channels around {type(layer).__name__} layer {name!r}",
                           "prune a model of conv, linear and norm layers, or quantize this one instead")
        # Channels of a grouped conv must go group by group, which remove_channels does not do;
        # depthwise convs (one channel a group) are fine.
        if isinstance(layer, nn.modules.conv._ConvNd) and 1 < layer.groups < layer.in_channels:
            raise BadInput(f"{verb}() cannot yet narrow the grouped conv {name!r} (groups={layer.groups})",
                           "prune a model without grouped convs (depthwise ones are fine), or quantize this one")


def dependency_graph(module: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    # torch-pruning traces layers through autograd: frozen parameters would hide them.
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    return tp.DependencyGraph().build_dependency(module, example)


def output_layers(graph: tp.DependencyGraph) -> list[nn.Module]:
    """The layers that produce the model's output: on every path back from the output, the
    first layer that mixes channels (a Linear head, a 1x1 conv before global pooling, ...).
    Their output channels are the model's outputs, so they are never narrowed."""
    nodes = graph.module2node.values()
    frontier = [node for node in nodes if not node.outputs]
    seen, found = set(), []
    while frontier:
        node = frontier.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.type in MIXING:
            found.append(node.module)
        else:
            frontier.extend(node.inputs)
    return found


def named_layers(module: nn.Module, names: Iterable[str], option: str) -> list[nn.Module]:
    """The submodules called `names` (for `protect=`), refusing names the model lacks."""
    if isinstance(names, str):
        names = (names,)
    layers = dict(module.named_modules())
    chosen = []
    for name in names:
        if not isinstance(name, str) or name not in layers or not name:
            raise BadOption(f"{option} names {name!r}, which is not a layer of the model",
                            closest(str(name), [n for n in layers if n]))
        chosen.append(layers[name])
    return chosen


def prunable_widths(module: nn.Module, graph: tp.DependencyGraph, kept: list[nn.Module]) -> dict[str, int]:
    """Output width of every layer whose channels form a prunable group, by name."""
    names = {layer: name for name, layer in module.named_modules()}
    widths = {}
    for group in graph.get_all_groups(ignored_layers=kept, root_module_types=ROOTS):
        root = group[0].dep.target.module
        widths[names[root]] = graph.get_out_channels(root)
    return widths


def target_widths(widths: Mapping[str, int], ratios: Mapping[str, float], round_to: int | None) -> dict[str, int]:
    """Channels each layer keeps when `ratios[name]` of its `widths[name]` are removed: rounded
    up to a multiple of `round_to` (fast kernels prefer it), at least one multiple, never more
    than the layer has."""
    unit = round_to or 1
    targets = {}
    for name, width in widths.items():
        wanted = width * (1.0 - ratios.get(name, 0.0))
        multiples = max(1, math.ceil(wanted / unit - 1e-9))  # the tolerance keeps 16 * 0.5 at 8, not 16
        targets[name] = min(width, multiples * unit)
    return targets


def remove_channels(module: nn.Module, graph: tp.DependencyGraph, scorer, keep: Mapping[str, int],
                    kept: list[nn.Module]) -> None:
    """Narrow each prunable group of `module` in place to `keep[root name]` channels, removing
    those `scorer` ranks lowest. Every group is scored before any is cut, so the scores are
    those of one model."""
    names = {layer: name for name, layer in module.named_modules()}
    cuts = []
    for group in graph.get_all_groups(ignored_layers=kept, root_module_types=ROOTS):
        dep = group[0].dep
        name = names[dep.target.module]
        width = graph.get_out_channels(dep.target.module)
        if keep.get(name, width) >= width:
            continue
        scores = scorer(group)
        if scores is None:  # torch-pruning's convention: a group the criterion cannot score stays
            continue
        lowest = torch.argsort(scores.detach().cpu(), stable=True)[: width - keep[name]]
        cuts.append((dep.target.module, dep.handler, sorted(lowest.tolist())))
    for layer, handler, idxs in cuts:
        graph.get_pruning_group(layer, handler, idxs).prune()

