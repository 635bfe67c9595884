"""Gradient attributions: saliency and Integrated Gradients, batched on the model's device."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from leanlens.errors import BadOption
from leanlens.explain.registry import method

RULES = ("gausslegendre", "riemann_middle", "riemann_trapezoid", "riemann_left", "riemann_right")


def target_scores(module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The score of each sample's target class, one a sample."""
    return module(x).gather(1, target[:, None])[:, 0]


def input_gradients(module, x: torch.Tensor, target: torch.Tensor, create_graph: bool = False):
    x = x.detach().requires_grad_(True)
    scores = target_scores(module, x, target)
    (grads,) = torch.autograd.grad(scores.sum(), x, create_graph=create_graph)
    return grads


@method("saliency", family="gradient", needs={"gradients"})
def saliency(model, x, target, *, absolute: bool = True):
    """Input gradient of the target score (Simonyan et al., 2014)."""
    grads = input_gradients(model.module, x, target)
    return (grads.abs() if absolute else grads), {}


@method("input_x_gradient", family="gradient", needs={"gradients"})
def input_x_gradient(model, x, target):
    """Input times its gradient (Shrikumar et al., 2016): a first-order share of the score."""
    return x * input_gradients(model.module, x, target), {}


@method("smoothgrad", family="gradient", needs={"gradients"})
def smoothgrad(model, x, target, *, nt_samples: int = 25, stdev: float = 0.15, absolute: bool = True, seed: int = 0):
    """SmoothGrad (Smilkov et al., 2017): saliency averaged over noisy copies of the input.

    `stdev` is relative to each sample's value range, as in the paper; the noise comes
    from a generator seeded with `seed`, so results repeat exactly.
    """
    nt_samples = positive_int("nt_samples", nt_samples, "use a positive int, e.g. 25")
    if stdev < 0:
        raise BadOption(f"stdev={stdev!r}", "use a noise level >= 0, relative to the input's range")
    flat = x.flatten(1)
    sigma = (stdev * (flat.max(1).values - flat.min(1).values)).view((-1,) + (1,) * (x.dim() - 1))
    generator = torch.Generator(device=x.device).manual_seed(seed)
    total = torch.zeros_like(x)
    for _ in range(nt_samples):
        noisy = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        grads = input_gradients(model.module, noisy, target)
        total += grads.abs() if absolute else grads
    return total / nt_samples, {}


def positive_int(name: str, value, hint: str) -> int:
    """`value` as an int (NumPy ints too), or BadOption naming the option."""
    if not isinstance(value, numbers.Integral) or value < 1:
        raise BadOption(f"{name}={value!r}", hint)
    return int(value)


def path_nodes(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions in [0, 1] along the straight path and their quadrature weights."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    if steps < 2 and rule == "riemann_trapezoid":
        raise BadOption("riemann_trapezoid needs steps >= 2", "raise steps")
    weights = np.full(steps, 1.0 / steps)
    if rule == "riemann_left":
        return np.arange(steps) / steps, weights
    if rule == "riemann_right":
        return np.arange(1, steps + 1) / steps, weights
    if rule == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, weights
    weights = np.full(steps, 1.0 / (steps - 1))
    weights[[0, -1]] /= 2
    return np.linspace(0, 1, steps), weights


def make_baseline(x: torch.Tensor, baseline) -> torch.Tensor:
    if np.ndim(baseline) == 0:  # a Python or NumPy number
        return torch.full_like(x, float(baseline))
    base = torch.as_tensor(np.asarray(baseline), dtype=x.dtype, device=x.device)
    if base.shape == x.shape[1:]:
        base = base.expand_as(x)
    if base.shape != x.shape:
        raise BadOption(
            f"baseline has shape {tuple(base.shape)}, the input {tuple(x.shape)}",
            "pass a number, one sample's shape, or the batch's shape",
        )
    return base


@method("ig", family="gradient", needs={"gradients"})
def integrated_gradients(model, x, target, *, steps: int = 64, rule: str = "gausslegendre", baseline=0.0, batch_size: int = 128):
    """Integrated Gradients (Sundararajan et al., 2017): path integral of input gradients.

    All (sample, step) points go through the model in chunks of `batch_size`, so memory
    is bounded whatever `steps` is. Returns the completeness error as `delta`.
    """
    if rule not in RULES:
        raise BadOption(f"unknown IG rule {rule!r}", "use one of " + ", ".join(RULES))
    steps = positive_int("steps", steps, "use a positive int, e.g. 64")
    batch_size = positive_int("batch_size", batch_size, "use a positive int: model inputs per forward pass")
    base = make_baseline(x, baseline)
    alphas, weights = (torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in path_nodes(steps, rule))
    n, shape = len(x), (-1,) + (1,) * (x.dim() - 1)
    summed = torch.zeros_like(x)
    for start in range(0, n * steps, batch_size):
        flat = torch.arange(start, min(start + batch_size, n * steps), device=x.device)
        sample, step = flat // steps, flat % steps
        points = base[sample] + alphas[step].view(shape) * (x[sample] - base[sample])
        grads = input_gradients(model.module, points, target[sample])
        summed.index_add_(0, sample, grads * weights[step].view(shape))
    values = (x - base) * summed
    with torch.no_grad():
        gap = target_scores(model.module, x, target) - target_scores(model.module, base, target)
    delta = values.flatten(1).sum(1) - gap
    return values, {"delta": delta}
