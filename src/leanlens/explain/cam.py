"""Class activation maps: Grad-CAM and Grad-CAM++ on a spatial layer, batched.

The model gives a layer's activations and the target scores' gradients there
(`DifferentiableModel.layer_gradients`: for torch, one forward and one backward that
stops at the layer); this module turns them into maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from leanlens.errors import BadOption
from leanlens.explain.gradients import checked_fold
from leanlens.explain.options import chunk_size
from leanlens.explain.registry import method


def _upsample(cam: torch.Tensor, model, x: torch.Tensor) -> torch.Tensor:
    # A channels-last model (Keras' default) takes (N, H, W, C): its grid is axes 1-2, not the last two.
    grid = x.shape[1:3] if getattr(model, "channels_last", False) else x.shape[-2:]
    return F.interpolate(cam[:, None], size=tuple(grid), mode="bilinear", align_corners=False)[:, 0]


def _cam(model, x, targets, layer, channel_weights, batch_size, create_graph, fold_bn):
    if layer is not None and not isinstance(layer, str):
        raise BadOption(f"layer={layer!r}", "name the layer as a string, e.g. 'layer4', or pass None for the last spatial one")
    fold_bn = checked_fold(create_graph, fold_bn)
    layer = layer or model.default_layer(x)
    step = chunk_size(batch_size, len(x))
    maps = []
    for i in range(0, len(x), step):
        act, grads = model.layer_gradients(x[i : i + step], lambda s, i=i: targets.pick(s, i), layer,
                                           create_graph=create_graph, fold_bn=fold_bn)
        maps.append(_weighted_map(act, channel_weights(act, grads)))
    cam = torch.cat(maps)
    return _upsample(cam, model, x), {"layer_values": cam, "layer": layer}


def _weighted_map(act: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ReLU of the channel-weighted sum of the activations, (N, H, W)."""
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
