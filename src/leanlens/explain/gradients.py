"""Gradient attributions: saliency, input × gradient, SmoothGrad and Integrated Gradients.

Every method runs on the model's device in chunks of `batch_size` model inputs, and
with `create_graph=True` returns attributions a loss can be differentiated through.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from leanlens.errors import BadOption
from leanlens.explain.baselines import make_baseline
from leanlens.explain.errorbars import NumericalError
from leanlens.explain.ig_path import (
    Path,
    completeness_delta,
    completeness_error,
    refined_ig,
)
from leanlens.explain.memory import budget_bytes, budget_chunk, memory_bytes
from leanlens.explain.options import chunk_size, flag, positive_int, real
from leanlens.explain.registry import lookup, method
from leanlens.explain.streams import sample_noise
from leanlens.explain.targets import Targets, class_scores, picked_scores

RULES = ("gausslegendre", "riemann_middle", "riemann_trapezoid", "riemann_left", "riemann_right")
NESTED_RULES = ("clenshaw_curtis", "romberg", "riemann_trapezoid")  # the rules `tol` refines: doubling reuses every point
SMOOTHABLE = ("saliency", "input_x_gradient", "ig")


def checked_fold(create_graph, fold_bn) -> bool:
    """`fold_bn` (a BN-folded copy: the same function, fewer passes), refused where the
    attributions must be differentiated back to the user's own weights."""
    if flag("fold_bn", fold_bn) and create_graph:
        raise BadOption("fold_bn=True with create_graph=True", "a folded copy has no graph to your weights: drop fold_bn")
    return fold_bn


def batch_gradients(model, x, targets: Targets, batch_size, create_graph, fold_bn=False) -> torch.Tensor:
    """Input gradients of the clean batch, chunk by chunk, resolving targets on the way."""
    step, fold_bn = chunk_size(batch_size, len(x)), checked_fold(create_graph, fold_bn)
    return torch.cat([
        model.input_gradients(x[i : i + step], lambda s, i=i: targets.pick(s, i), create_graph=create_graph,
                              fold_bn=fold_bn)
        for i in range(0, len(x), step)
    ])


@method("saliency", family="gradient", needs={"gradients"})
def saliency(model, x, targets, *, absolute: bool = True, batch_size: int | None = None, create_graph: bool = False,
             fold_bn: bool = False):
    """Input gradient of the target score (Simonyan et al., 2014)."""
    grads = batch_gradients(model, x, targets, batch_size, create_graph, fold_bn)
    return (grads.abs() if flag("absolute", absolute) else grads), {}


@method("input_x_gradient", family="gradient", needs={"gradients"})
def input_x_gradient(model, x, targets, *, batch_size: int | None = None, create_graph: bool = False,
                     fold_bn: bool = False):
    """Input times its gradient (Shrikumar et al., 2016): a first-order share of the score."""
    return x * batch_gradients(model, x, targets, batch_size, create_graph, fold_bn), {}


NOISE_LEVEL = 0.15  # Smilkov et al. found 10-20 % of the input's range best


@method("smoothgrad", family="gradient", needs={"gradients"})
def smoothgrad(model, x, targets, *, base: str = "saliency", nt_samples: int = 25, noise_level: float | None = None,
               stdevs: float | None = None, seed: int = 0, batch_size: int | None = 128, create_graph: bool = False,
               fold_bn: bool = False):
    """SmoothGrad (Smilkov et al., 2017): a gradient method averaged over noisy copies of the input.

    The noise's standard deviation is `noise_level` times each sample's value range (as in
    the paper; 0.15 when neither is given), or `stdevs`, one absolute value for every sample
    (Captum's NoiseTunnel `stdevs`). All noisy copies go through `base` as one batch (chunked
    by `batch_size`); each sample's noise comes from its own stream, keyed by `seed` and the
    sample (`explain.streams`), so results repeat whatever batch or shard the sample is in.
    """
    if base not in SMOOTHABLE:
        raise BadOption(f"smoothgrad cannot smooth {base!r}", "use one of " + ", ".join(SMOOTHABLE))
    nt_samples = positive_int("nt_samples", nt_samples, "use a positive int, e.g. 25")
    sigma = _noise_sigma(x, noise_level, stdevs)
    picked = targets.pick(class_scores(model, x, chunk_size(batch_size, len(x))))
    noise = sample_noise(x, seed, nt_samples)  # each sample's own stream: equal whatever its batch
    noisy = (x + sigma * noise).flatten(0, 1)  # copy k of sample i at row k * N + i
    repeated = Targets(picked.repeat(nt_samples).cpu().numpy(), len(noisy))
    values, _ = lookup(base).fn(model, noisy, repeated, batch_size=batch_size, create_graph=create_graph,
                                fold_bn=fold_bn)
    copies = values.view((nt_samples,) + x.shape)
    mean = copies.mean(0)
    return mean, {"error": noise_standard_error(copies, mean)}


def noise_standard_error(copies: torch.Tensor, mean: torch.Tensor) -> NumericalError | None:
    """SmoothGrad's Monte Carlo error: each value's standard error over the noisy copies, std / sqrt(n),
    measured against the map's largest |value| (it has no score gap); None with a single copy."""
    n = len(copies)
    if n < 2:
        return None
    # in the copies' own precision (half precision widened to float32): a float64 copy of every
    # noisy map cost 20 % more memory than the call itself, for an error bar's two digits
    copies = copies.detach()
    se = copies.float().std(0) if copies.dtype in (torch.float16, torch.bfloat16) else copies.std(0)
    se = se.double() / math.sqrt(n)
    scale = mean.detach().double().flatten(1).abs().max(1).values
    return NumericalError("noise_standard_error", se.cpu().numpy(), scale.cpu().numpy())


def _noise_sigma(x: torch.Tensor, noise_level, stdevs) -> torch.Tensor | float:
    """The noise's standard deviation: absolute (`stdevs`) or relative to each sample's range."""
    if noise_level is not None and stdevs is not None:
        raise BadOption("smoothgrad got both noise_level and stdevs",
                        "pass noise_level (a fraction of each sample's range) or stdevs (absolute), not both")
    if stdevs is not None:
        return real("stdevs", stdevs, "use an absolute standard deviation >= 0, as in Captum's NoiseTunnel", low=0)
    level = real("noise_level", NOISE_LEVEL if noise_level is None else noise_level,
                 "use a fraction >= 0 of each sample's value range, e.g. 0.15", low=0)
    flat = x.flatten(1)
    return (level * (flat.max(1).values - flat.min(1).values)).view((-1,) + (1,) * (x.dim() - 1))


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


@method("ig", family="gradient", needs={"gradients"})
def integrated_gradients(model, x, targets, *, steps: int | None = None, rule: str | None = None, baseline="zeros",
                         tol: float | None = None, max_steps: int = 257, feature_tol: float | None = None,
                         batch_size: int | None = None, memory=None, seed: int = 0, create_graph: bool = False,
                         fold_bn: bool = False):
    """Integrated Gradients (Sundararajan et al., 2017): path integral of input gradients.

    With `steps` (default 64) every sample gets that many points of `rule` (default
    'gausslegendre'). With `tol`, each sample is refined on its own until its completeness
    error |delta| <= tol * |f(x) - f(baseline)|, or `max_steps` points: a nested rule doubles
    the points, reusing all earlier ones, checked from the first level of at least `steps`
    points (default 3), and a sample that converges stops (the trapezoid checks halfway
    too, after halving the cells where the values step most). `rule='auto'` (the default)
    takes 'riemann_trapezoid' on a piecewise-linear net such as a ReLU CNN and
    'clenshaw_curtis' otherwise; those two and 'romberg' may also be named. A sample that plateaus above `tol` (ReLU kinks) keeps its
    delta, reported in the explanation's `error` with `error.change`, what the last
    refinement moved its values (the per-feature estimate that the sum is not); with
    `feature_tol` a sample also refines until that change is <= feature_tol (the sum can be
    within tol while single values are not: ReLU nets). All (sample, point) inputs go
    through the model `batch_size` at a time, or as many as `memory` ('2GB'; default: half
    the free device memory) holds. `baseline` is a number, an array, or 'zeros', 'mean',
    'blur' or 'uniform' (seeded by `seed`). `fold_bn=True` runs a copy with batch norms
    folded into the convolutions: about 1.25x faster on a ResNet, equal up to float rounding.
    """
    rule = ig_rule(rule, tol)
    if feature_tol is not None:
        if tol is None:
            raise BadOption("feature_tol without tol", "pass tol= too (e.g. tol=1e-3, feature_tol=0.02): both refine")
        real("feature_tol", feature_tol, "use a relative change of the values > 0, e.g. 0.02", low=0, strict=True)
    base = make_baseline(x, baseline, seed)
    fold_bn = checked_fold(create_graph, fold_bn)
    # refining to a tol keeps gradients besides the passes: each gets half the budget
    step = budget_chunk(batch_size, model, x[:1], memory, fold_bn, share=1.0 if tol is None else KEPT_SHARE)
    target, gap = path_ends(model, x, base, targets, step, fold_bn)
    path = Path(model, x, base, target, create_graph, fold_bn, step)
    if tol is not None:
        return refined_ig(path, gap, tol, max_steps, steps, rule, kept_bytes(x, step, batch_size, memory), feature_tol)
    steps = positive_int("steps", 64 if steps is None else steps, "use a positive int, e.g. 64")
    alphas, weights = (torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in path_nodes(steps, rule))
    sample = torch.arange(len(x), device=x.device).repeat_interleave(steps)
    summed = path.weighted_sums(sample, alphas.repeat(len(x)), weights.repeat(len(x)))
    values = (x - base) * summed
    delta = completeness_delta(values, gap)
    return values, {"delta": delta.float(), "error": completeness_error(delta, gap, None, torch.full_like(gap, steps)),
                    "rule": rule}


KEPT_SHARE = 0.5  # of the memory budget, for the gradients IG keeps when refining to a tol
KEPT_INPUTS = 64  # beside a pass size the caller chose, gradients of 64 passes' inputs may be kept,
KEPT_FLOOR = 64 * 2**20  # or 64 MB, whichever is more


def kept_bytes(x: torch.Tensor, step: int, batch_size, memory) -> int:
    """What the gradients IG keeps for reuse (refining to a tol) may take. Beside passes sized to
    the budget, the other half of it. Beside a `batch_size` the caller chose, 64 passes' inputs (a
    quarter of a pass's samples at 257 points: the middle levels' new points fill a pass) or 64 MB if
    more, and at most half of `memory` if given. (Bounded by one pass's copies, as they were, a budget
    or batch size a few dozen inputs large refined one sample at a time: 1.4x slower.)"""
    if batch_size is None:
        return int(budget_bytes(memory, x.device) * KEPT_SHARE)
    kept = max(KEPT_INPUTS * step * x[0].numel() * x.element_size(), KEPT_FLOOR)
    return kept if memory is None else min(kept, int(memory_bytes(memory) * KEPT_SHARE))


def ig_rule(rule, tol) -> str:
    """The rule to integrate with: a nested one when refining to `tol`, Gauss-Legendre otherwise."""
    if tol is None:
        rule = "gausslegendre" if rule is None else rule
        if rule in NESTED_RULES + ("auto",) and rule not in RULES:
            raise BadOption(f"rule={rule!r} refines to a tolerance and needs tol=",
                            "pass tol= (e.g. 1e-3), or with steps= use one of " + ", ".join(RULES))
        if rule not in RULES:
            raise BadOption(f"unknown IG rule {rule!r}", "use one of " + ", ".join(RULES))
        return rule
    real("tol", tol, "use a relative completeness error > 0, e.g. 1e-3", low=0, strict=True)
    rule = "auto" if rule is None else rule
    if rule not in NESTED_RULES + ("auto",):
        raise BadOption(f"rule={rule!r} cannot refine to tol: its points are not reused when refined",
                        "with tol use rule='auto', 'clenshaw_curtis', 'romberg' or 'riemann_trapezoid' (or drop tol, set steps)")
    return rule


def path_ends(model, x, base, targets: Targets, step: int, fold_bn) -> tuple[torch.Tensor, torch.Tensor]:
    """The targets, and each sample's score gap f(x) - f(baseline) that completeness is checked against."""
    with torch.no_grad():
        both = torch.cat([x, base])
        ends = torch.cat([model.scores(both[i : i + step], fold_bn=fold_bn) for i in range(0, len(both), step)])
        target = targets.pick(ends[: len(x)])
        return target, picked_scores(ends[: len(x)], target) - picked_scores(ends[len(x) :], target)
