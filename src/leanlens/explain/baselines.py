"""Reference inputs for path and perturbation methods: what "absent" means for a feature.

A baseline is a number, an array (one sample's shape or the batch's), or one of the
names below. The choice changes the answer (Sturmfels et al., 2020, "Visualizing the
Impact of Feature Attribution Baselines"), so it is recorded with every explanation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from leanlens.errors import BadOption
from leanlens.explain.streams import sample_noise

NAMED = ("zeros", "mean", "blur", "uniform")


def make_baseline(x: torch.Tensor, baseline, seed: int = 0) -> torch.Tensor:
    """The baseline for each sample of `x`, with `x`'s shape, dtype and device."""
    if isinstance(baseline, str):
        return _named(x, baseline, seed)
    if isinstance(baseline, torch.Tensor):
        baseline = baseline.detach().cpu().numpy()
    values = np.asarray(baseline)
    if values.dtype == bool or not np.issubdtype(values.dtype, np.number):
        raise BadOption(f"baseline of type {type(baseline).__name__} ({values.dtype})",
                        "pass a number, an array, or one of " + ", ".join(NAMED))
    if not np.isfinite(values).all():
        raise BadOption("baseline has NaN or inf", "pass finite values")
    if values.ndim == 0:  # a Python or NumPy number
        return torch.full_like(x, float(values))
    base = torch.as_tensor(values, dtype=x.dtype, device=x.device)
    if base.shape == x.shape[1:]:
        base = base.expand_as(x)
    if base.shape != x.shape:
        raise BadOption(
            f"baseline has shape {tuple(base.shape)}, the input {tuple(x.shape)}",
            "pass a number, one sample's shape, the batch's shape, or one of " + ", ".join(NAMED),
        )
    return base


def _named(x: torch.Tensor, name: str, seed: int) -> torch.Tensor:
    if name == "zeros":
        return torch.zeros_like(x)
    if name == "mean":  # each sample's own mean, per channel for images
        dims = tuple(range(2, x.dim())) if x.dim() > 2 else (1,)
        return x.mean(dim=dims, keepdim=True).expand_as(x).clone()
    if name == "blur":
        return blur(x)
    if name == "uniform":  # noise over each sample's own value range
        flat = x.flatten(1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        low, high = flat.min(1).values.view(shape), flat.max(1).values.view(shape)
        noise = sample_noise(x, seed, 1, kind="uniform")[0]  # each sample's own stream (explain.streams)
        return low + (high - low) * noise
    raise BadOption(f"unknown baseline {name!r}", "use a number, an array, or one of " + ", ".join(NAMED))


def blur(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """A Gaussian blur over the last two axes; `sigma` defaults to a tenth of the larger side.

    A heavy blur keeps the image's colours and layout but removes its edges and texture,
    the information a vision model mostly uses.
    """
    if x.dim() != 4:
        raise BadOption(f"the 'blur' baseline needs images (N, C, H, W), got {x.dim()} axes",
                        "use 'zeros', 'mean' or 'uniform' for this input")
    sigma = sigma if sigma is not None else max(x.shape[-2:]) / 10
    radius = max(1, int(3 * sigma + 0.5))  # three sigmas, rounded as scipy.ndimage does
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    # Reflect padding needs a pad smaller than the side; replicate beyond that.
    mode = "reflect" if radius < min(h, w) else "replicate"
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)
