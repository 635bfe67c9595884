"""Class activation maps: Grad-CAM and Grad-CAM++ on a spatial layer, batched.

One forward pass and one backward that stops at the layer: the hooked activation is
made a leaf, so no gradient flows below it and none is computed for the weights.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from leanlens.errors import BadOption, MissingCapability
from leanlens.explain.gradients import differentiated
from leanlens.explain.options import chunk_size
from leanlens.explain.registry import method
from leanlens.explain.targets import picked_scores

# Layers whose output the folded copy changes (a conv's or linear's includes the norm after it).
FOLDED_AWAY = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)


def last_spatial_layer(model, x: torch.Tensor) -> str:
    """Name of the last leaf module, in call order, whose output is an (N, C, H, W) map."""
    found: list[str] = []
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: found.append(name) if _spatial(o) else None)
        for name, module in model.module.named_modules()
        if name and not any(True for _ in module.children())
    ]
    try:
        with torch.no_grad():
            model.module(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        raise MissingCapability("the model has no spatial layer for a CAM method", "use a gradient method such as 'ig'")
    return found[-1]


def _spatial(output) -> bool:
    return isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1


def layer_activations_and_gradients(module, x, pick, layer: str, create_graph: bool = False):
    """The layer's activations and the target score's gradient with respect to them.

    `module` is the network to run (the model's own, or its BN-folded copy); `pick(scores)`
    names the targets, as in `input_gradients`.

    Without create_graph nothing below the layer needs a graph: the forward runs without
    one up to the layer, whose activation becomes a leaf, and records one from there on.
    The backward pass then stops at the layer.
    """
    captured = {}

    def hook(module, inputs, output):
        if not _spatial(output):
            raise MissingCapability(f"layer {layer!r} does not output a spatial (N, C, H, W) map", "pick a convolutional layer")
        if not create_graph:
            torch.set_grad_enabled(True)  # undone when the no_grad block around the forward exits
            output = output.detach().requires_grad_(True)
        captured["act"] = output
        # A clone, so that an in-place op after the layer (ReLU(inplace=True)) leaves it intact.
        return output.clone()

    handle = module.get_submodule(layer).register_forward_hook(hook)
    try:
        with contextlib.nullcontext() if create_graph else torch.no_grad():
            scores = module(x)
    finally:
        handle.remove()
    if "act" not in captured:
        raise BadOption(f"layer {layer!r} was not called in the forward pass", "name a layer the model uses")
    act = captured["act"]
    (grads,) = torch.autograd.grad(picked_scores(scores, pick(scores)).sum(), act, create_graph=create_graph)
    return (act if create_graph else act.detach()), grads


def _upsample(cam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(cam[:, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]


def _cam(model, x, targets, layer, channel_weights, batch_size, create_graph, fold_bn):
    if layer is not None and not isinstance(layer, str):
        raise BadOption(f"layer={layer!r}", "name the layer as a string, e.g. 'layer4', or pass None for the last spatial one")
    layer = layer or last_spatial_layer(model, x)
    hooked = model.layer(layer)  # an unknown name fails here, with the closest names as the hint
    module = _network(model, layer, hooked, create_graph, fold_bn)
    step = chunk_size(batch_size, len(x))
    maps = [_layer_cam(module, x[i : i + step], lambda s, i=i: targets.pick(s, i), layer, channel_weights, create_graph)
            for i in range(0, len(x), step)]
    cam = torch.cat(maps)
    return _upsample(cam, x), {"layer_values": cam, "layer": layer}


def _network(model, layer: str, hooked, create_graph: bool, fold_bn: bool):
    """The module to run: the BN-folded copy when asked for and when the layer means the same
    there. A conv or linear layer does not (in the copy its output has the norm in it), and a
    block that the trace inlined is never called; both run on the model itself."""
    network = differentiated(model, create_graph, fold_bn)  # checks the pair of options
    if network is model.module or isinstance(hooked, FOLDED_AWAY):
        return model.module
    # The traced copy calls leaf modules only (a block's forward is inlined): hook only those.
    called = {node.target for node in network.graph.nodes if node.op == "call_module"}
    return network if layer in called else model.module


def _layer_cam(module, x, pick, layer, channel_weights, create_graph):
    act, grads = layer_activations_and_gradients(module, x, pick, layer, create_graph)
    weights = channel_weights(act, grads)
    # (N, 1, C) @ (N, C, HW): a batched matmul reads the activations once, in place.
    return torch.relu(torch.matmul(weights[:, None], act.flatten(2))).view(act.shape[0], *act.shape[2:])


def gradcam_weights(act, grads):
    return grads.mean(dim=(2, 3))


def gradcam_plusplus_weights(act, grads):
    """Pixel-weighted gradients (Chattopadhyay et al., 2018), with the exponential-score closed form.

    With S = exp(score), the second and third derivatives are powers of the first g, so
    alpha = g² / (2 g² + Σ_ij A · g³). Only positive g count (alpha · ReLU(g)), and there
    alpha · g = g / (2 + Σ_ij A · g). Where the denominator is 0, alpha is 0 by definition:
    the 0/0 and g/0 that division leaves there become 0. (Masks and `where` cost six
    times more than this on CPU: boolean tensors are slow there.)

    Unless a loss will be differentiated through them, the steps run in place: each fresh
    map-sized buffer costs page faults that, on CPU, outweigh the arithmetic.
    """
    totals = act.sum(dim=(2, 3), keepdim=True)
    if grads.requires_grad or act.requires_grad:
        ratio = (grads.clamp_min(0) / (totals * grads + 2)).nan_to_num(0.0, 0.0, 0.0)
    else:
        ratio = grads.clamp_min(0).div_((totals * grads).add_(2)).nan_to_num_(0.0, 0.0, 0.0)
    return ratio.sum(dim=(2, 3))


@method("gradcam", family="cam", needs={"gradients", "layers"})
def gradcam(model, x, targets, *, layer: str | None = None, batch_size: int | None = None, create_graph: bool = False,
            fold_bn: bool = False):
    """Grad-CAM (Selvaraju et al., 2017): activations weighted by mean gradients, ReLU."""
    return _cam(model, x, targets, layer, gradcam_weights, batch_size, create_graph, fold_bn)


@method("gradcam++", family="cam", needs={"gradients", "layers"})
def gradcam_plusplus(model, x, targets, *, layer: str | None = None, batch_size: int | None = None,
                     create_graph: bool = False, fold_bn: bool = False):
    """Grad-CAM++ (Chattopadhyay et al., 2018): positive gradients weighted per pixel."""
    return _cam(model, x, targets, layer, gradcam_plusplus_weights, batch_size, create_graph, fold_bn)
