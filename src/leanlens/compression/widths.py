"""Which widths a model can change, and pruning it to chosen widths.

A *group* is a set of channels that must be removed together (a conv's outputs, the batch
norm after it, the next layer's inputs; all the blocks of a residual stage), as
torch-pruning's dependency graph finds them. A group is named after its root layer, and its
width is how many channels it keeps. The layers producing the model's output are never
narrowed, whatever their type.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from leanlens.compression import surgery
from leanlens.errors import BadInput, BadOption, closest

WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class Layer:
    """One conv, linear or norm layer, and the groups that set its input and output widths."""

    name: str
    kind: str  # "conv", "linear" or "norm"
    cin: int
    cout: int
    input_shape: tuple[int, ...]  # as seen on the example, batch first
    outputs_per_channel: int  # output positions per sample and channel (H×W for a 2-D conv)
    in_group: str | None  # None: this width is fixed (the image's channels, the head's classes)
    out_group: str | None
    kernel_size: int = 1  # kernel positions: weights per (input channel, output channel) pair
    bias: bool = False  # has a bias; for a norm layer, an affine weight and bias
    depthwise: bool = False
    geometry: tuple = ()  # a conv's (kernel_size, stride, padding, dilation), to time it as it runs
    normed: bool = False  # a norm layer shares its outputs: timed as conv → norm → ReLU

    def params(self, cin: int, cout: int) -> int:
        if self.kind == "norm":
            return 2 * cout if self.bias else 0
        per_output = (1 if self.depthwise else cin) * self.kernel_size
        return cout * per_output + (cout if self.bias else 0)

    def macs(self, cin: int, cout: int) -> int:
        if self.kind == "norm":
            return 0
        per_output = (1 if self.depthwise else cin) * self.kernel_size
        return cout * per_output * self.outputs_per_channel


@dataclass(frozen=True)
class Layout:
    """The model's prunable groups (name → full width) and the layers they touch."""

    groups: Mapping[str, int]
    layers: Mapping[str, Layer]
    fixed_params: int  # parameters no group changes (embeddings, the head's bias, ...)


def as_example(module: nn.Module, example) -> torch.Tensor:
    """`example` as a float tensor on the module's device, refused in one line if the module cannot take it."""
    from leanlens.compression.checks import first_scores

    if not isinstance(example, torch.Tensor):
        example = torch.as_tensor(np.asarray(example, dtype=np.float32))
    example = example.to(next(module.parameters()).device)
    first_scores(module, example)
    return example


def layout(module: nn.Module, example: torch.Tensor, protect: Iterable[str] = ()) -> Layout:
    """The groups of `module` that may be narrowed, leaving out the output layers and `protect`."""
    module = copy.deepcopy(module).eval()
    names = {m: n for n, m in module.named_modules()}
    protect = _known_layers(protect, names.values())
    graph = _graph(module, example)
    layer_groups: dict[str, dict[str, str]] = {}
    groups: dict[str, int] = {}
    for root, group in _groups(module, example, graph):
        members = [(names.get(item.dep.target.module), graph.is_out_channel_pruning_fn(item.dep.handler))
                   for item in group]
        if any(name in protect for name, out in members if out):
            continue
        groups[root] = len(group[0].idxs)
        for name, out in members:
            if name is not None:
                layer_groups.setdefault(name, {})["out" if out else "in"] = root
    layers = {name: _layer(name, module.get_submodule(name), shape, layer_groups.get(name, {}))
              for name, shape in _shapes(module, example).items()}
    layers = _mark_normed(layers)
    modelled = sum(layer.params(layer.cin, layer.cout) for layer in layers.values())
    fixed = sum(p.numel() for p in module.parameters()) - modelled
    return Layout(groups=groups, layers=layers, fixed_params=fixed)


def output_layers(module: nn.Module, example: torch.Tensor) -> list[str]:
    """The names of the layers that produce the model's output (`surgery.output_layers`: the first
    channel-mixing layer on every path back from the output, a Linear or a 1×1-conv head alike)."""
    names = {layer: name for name, layer in module.named_modules()}
    return sorted(names[layer] for layer in surgery.output_layers(_graph(module, example)))


def channel_scores(module: nn.Module, example: torch.Tensor, importance) -> dict[str, np.ndarray]:
    """One score a channel for every group of `module`, from a torch-pruning importance.

    Gradient-based importances (Taylor) read the `.grad` already on the parameters: run the
    backward passes first, on `module` itself.
    """
    return {root: importance(group).detach().cpu().double().numpy()
            for root, group in _groups(module, example, _graph(module, example))}


def prune_to_widths(module: nn.Module, example: torch.Tensor, widths: Mapping[str, int],
                    scores: Mapping[str, np.ndarray]) -> nn.Module:
    """A copy of `module` whose groups keep `widths[group]` channels: those with the highest scores."""
    module = copy.deepcopy(module)
    with _traceable(module):
        graph = _graph(module, example)
        known = {root: group for root, group in _groups(module, example, graph)}
        for name, width in widths.items():
            if name not in known:
                raise BadInput(f"widths name group {name!r}, which the model does not have", closest(name, known))
            full = len(known[name][0].idxs)
            if not 1 <= width <= full:
                raise BadOption(f"widths[{name!r}]={width}", f"keep between 1 and {full} channels")
        for name, width in widths.items():
            drop = np.argsort(np.asarray(scores[name]), kind="stable")[: len(known[name][0].idxs) - width]
            if len(drop):
                layer = module.get_submodule(name)
                handler = graph.get_pruner_of_module(layer).prune_out_channels
                graph.get_pruning_group(layer, handler, sorted(int(i) for i in drop)).prune()
    return module


def _graph(module: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    # torch-pruning traces through autograd: frozen parameters would hide their layers.
    with _traceable(module):
        return tp.DependencyGraph().build_dependency(module, example_inputs=example)


def _groups(module: nn.Module, example: torch.Tensor, graph: tp.DependencyGraph):
    """(root layer name, torch-pruning group) for every group that does not narrow an output layer."""
    names = {m: n for n, m in module.named_modules()}
    head = [module.get_submodule(name) for name in output_layers(module, example)]
    for group in graph.get_all_groups(ignored_layers=head, root_module_types=WEIGHTED):
        touched = {item.dep.target.module for item in group if graph.is_out_channel_pruning_fn(item.dep.handler)}
        if not any(layer in touched for layer in head):
            yield names[group[0].dep.target.module], group


@contextlib.contextmanager
def _traceable(module: nn.Module) -> Iterator[None]:
    """Every parameter requires grad, and the module is in eval mode (no batch-norm statistics move),
    inside the block; each parameter and submodule gets its own flag back after it."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        for p, _ in flags:
            p.requires_grad_(True)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.train(mode)


def _shapes(module: nn.Module, example: torch.Tensor) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Input and output shape of every conv, linear and norm layer on `example`."""
    shapes = {}
    with torch.no_grad(), _watching(module, WEIGHTED + NORMS, lambda name, inputs, out: shapes.setdefault(
            name, (tuple(inputs[0].shape), tuple(out.shape)))):
        module(example)
    return shapes


@contextlib.contextmanager
def _watching(module: nn.Module, kinds: tuple[type, ...], see) -> Iterator[None]:
    """`see(name, inputs, output)` after each forward of a layer of `kinds`, inside the block only."""

    def hook(name):
        def call(_layer, inputs, out):
            see(name, inputs, out)  # returns None: the layer's output stays what it was

        return call

    hooks = [layer.register_forward_hook(hook(name)) for name, layer in module.named_modules() if isinstance(layer, kinds)]
    try:
        yield
    finally:
        for handle in hooks:
            handle.remove()


def _layer(name: str, layer: nn.Module, shapes, groups: Mapping[str, str]) -> Layer:
    input_shape, output_shape = shapes
    has_bias = getattr(layer, "bias", None) is not None
    if isinstance(layer, nn.modules.conv._ConvNd):
        depthwise = layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels
        if layer.groups > 1 and not depthwise:
            raise BadInput(f"layer {name!r} is a grouped conv (groups={layer.groups})",
                           "protect its group, or prune a model whose convs are plain or depthwise")
        # A depthwise conv's inputs are its outputs: both follow its group.
        return Layer(name, "conv", layer.in_channels, layer.out_channels, input_shape,
                     int(np.prod(output_shape[2:])), groups.get("out" if depthwise else "in"), groups.get("out"),
                     int(np.prod(layer.kernel_size)), has_bias, depthwise,
                     (layer.kernel_size, layer.stride, layer.padding, layer.dilation))
    if isinstance(layer, nn.Linear):
        return Layer(name, "linear", layer.in_features, layer.out_features, input_shape,
                     int(np.prod(output_shape[1:-1])), groups.get("in"), groups.get("out"), 1, has_bias)
    width = getattr(layer, "num_features", None) or getattr(layer, "num_channels", None) or layer.normalized_shape[-1]
    # A norm layer's inputs are its outputs: both follow its group.
    return Layer(name, "norm", width, width, input_shape, 0, groups.get("out"), groups.get("out"), 1,
                 getattr(layer, "weight", None) is not None)


def _mark_normed(layers: dict[str, Layer]) -> dict[str, Layer]:
    normed_groups = {layer.out_group for layer in layers.values() if layer.kind == "norm" and layer.out_group}
    return {name: replace(layer, normed=True) if layer.kind == "conv" and layer.out_group in normed_groups else layer
            for name, layer in layers.items()}


def _known_layers(protect: Iterable[str], names: Iterable[str]) -> set[str]:
    protect = [protect] if isinstance(protect, str) else list(protect)
    names = set(names)
    for name in protect:
        if name not in names:
            raise BadOption(f"protect names layer {name!r}, which the model does not have", closest(name, names))
    return set(protect)
