"""The torch mechanics behind `TorchModel`'s gradients: input gradients, and a layer's
activations and gradients for CAM methods (hooks that are always removed).

Each function takes `call(network, x) -> scores`, the adapter's forward (it picks the
scores out of the model's output and turns a first-forward shape error into one line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from leanlens.errors import BadOption, MissingCapability
from leanlens.models.base import Pick

Call = Callable[[nn.Module, torch.Tensor], torch.Tensor]

# Layers whose output the folded copy changes (a conv's or linear's includes the norm after it).
FOLDED_AWAY = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)


def picked_sum(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The sum over samples of each one's target score: its gradient is each sample's own."""
    return scores.gather(1, target[:, None]).sum()


def input_gradients(call: Call, network: nn.Module, x: torch.Tensor, pick: Pick, create_graph: bool) -> torch.Tensor:
    """Gradient of each sample's target score; `pick(scores)` names the targets."""
    x = x.detach().requires_grad_(True)
    scores = call(network, x)
    (grads,) = torch.autograd.grad(picked_sum(scores, pick(scores)), x, create_graph=create_graph)
    return grads


def last_spatial_layer(call: Call, module: nn.Module, x: torch.Tensor) -> str:
    """Name of the last leaf module, in call order, whose output is an (N, C, H, W) map."""
    found: list[str] = []
    handles = [
        leaf.register_forward_hook(lambda m, i, o, name=name: found.append(name) if is_spatial(o) else None)
        for name, leaf in module.named_modules()
        if name and not any(True for _ in leaf.children())
    ]
    try:
        with torch.no_grad():
            call(module, x[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        raise MissingCapability("the model has no spatial layer for a CAM method", "use a gradient method such as 'ig'")
    return found[-1]


def is_spatial(output) -> bool:
    return isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1


def cam_network(module: nn.Module, folded: nn.Module, layer: str) -> nn.Module:
    """The network to hook `layer` in: the BN-folded copy where the layer means the same there.

    A conv or linear layer does not (in the copy its output has the norm in it), and a
    block that the trace inlined is never called; both run on the model itself.
    """
    if folded is module or isinstance(module.get_submodule(layer), FOLDED_AWAY):
        return module
    # The traced copy calls leaf modules only (a block's forward is inlined): hook only those.
    called = {node.target for node in folded.graph.nodes if node.op == "call_module"}
    return folded if layer in called else module


def layer_gradients(call: Call, network: nn.Module, x: torch.Tensor, pick: Pick, layer: str, create_graph: bool):
    """The layer's activations and the target score's gradient with respect to them.

    Without create_graph nothing below the layer needs a graph: the forward runs without
    one up to the layer, whose activation becomes a leaf, and records one from there on.
    The backward pass then stops at the layer.
    """
    captured = {}

    def hook(module, inputs, output):
        if not is_spatial(output):
            raise MissingCapability(f"layer {layer!r} does not output a spatial (N, C, H, W) map", "pick a convolutional layer")
        if not create_graph:
            torch.set_grad_enabled(True)  # undone when the no_grad block around the forward exits
            output = output.detach().requires_grad_(True)
        captured["act"] = output
        # A clone, so that an in-place op after the layer (ReLU(inplace=True)) leaves it intact.
        return output.clone()

    handle = network.get_submodule(layer).register_forward_hook(hook)
    try:
        with contextlib.nullcontext() if create_graph else torch.no_grad():
            scores = call(network, x)
    finally:
        handle.remove()
    if "act" not in captured:
        raise BadOption(f"layer {layer!r} was not called in the forward pass", "name a layer the model uses")
    act = captured["act"]
    (grads,) = torch.autograd.grad(picked_sum(scores, pick(scores)), act, create_graph=create_graph)
    return (act if create_graph else act.detach()), grads
