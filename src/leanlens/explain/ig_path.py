"""The straight path of Integrated Gradients, and its refinement to a tolerance.

`Path.weighted_sums` turns (sample, position, weight) rows into per-sample weighted sums
of input gradients, `step` model inputs a pass. `refined_ig` integrates each sample on
its own with a nested rule, 2, 3, 5, 9, ... 2^k + 1 points, each level adding only the
points between the last level's (the trapezoid's in two halves, see `halves`), and stops
a sample as soon as its completeness error is within tolerance.

The default rule, 'auto', is read off the model after the first level (whose points, 0 and
1, every rule shares): on a smooth net Clenshaw–Curtis, which needs about the points of the
cheapest fixed Gauss–Legendre call of the same accuracy, while Romberg needs 1.5-2x and the
trapezoid far more; on a piecewise-linear net (ReLUs, max-pools, affine layers; see
`leanlens.explain.linearity`) the integrand is piecewise constant along the path, higher
orders buy nothing, and the trapezoid needs the fewest points (256 against 360 for 8 images
of the demo CNN) with the smallest per-feature error. Clenshaw–Curtis' and Romberg's
weights change for old points when refined, so the gradients taken are kept (the
trapezoid's too): samples are refined a group at a time to bound that memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from leanlens.errors import BadOption
from leanlens.explain.errorbars import NumericalError
from leanlens.explain.linearity import piecewise_linear
from leanlens.explain.options import positive_int


@dataclass
class Path:
    model: object
    x: torch.Tensor
    base: torch.Tensor
    target: torch.Tensor
    create_graph: bool
    fold_bn: bool
    step: int  # model inputs a pass

    def weighted_sums(self, sample: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum over rows r of weights[r] * grad f(base + alphas[r] (x - base)) of sample[r], (N, ...)."""
        shape = (-1,) + (1,) * (self.x.dim() - 1)
        summed = torch.zeros_like(self.x)
        for start in range(0, len(sample), self.step):
            rows = slice(start, start + self.step)
            s = sample[rows]
            # Captum's arithmetic, b + a (x - b), so that points on a ReLU kink round as Captum's do
            points = self.base[s] + alphas[rows].view(shape) * (self.x[s] - self.base[s])
            grads = self.model.input_gradients(points, lambda _, s=s: self.target[s], create_graph=self.create_graph,
                                               fold_bn=self.fold_bn)
            summed = summed.index_add(0, s, grads * weights[rows].view(shape))
        return summed

    def gradients(self, samples: torch.Tensor, alphas: torch.Tensor, watch=None) -> torch.Tensor:
        """Input gradients at positions `alphas` of each of `samples`, (len(samples), positions, ...):
        `alphas` (positions,) the same for every sample, or (len(samples), positions) each its own.
        `watch(scores)`, when given, sees the scores (with their graph) of each pass."""
        alphas = alphas.to(self.x.device, self.x.dtype)
        if alphas.dim() == 1:
            alphas = alphas.expand(len(samples), -1)
        sample, alpha = samples.repeat_interleave(alphas.shape[1]), alphas.reshape(-1)
        shape = (-1,) + (1,) * (self.x.dim() - 1)
        out = []
        for start in range(0, len(sample), self.step):
            s, a = sample[start : start + self.step], alpha[start : start + self.step]
            points = torch.lerp(self.base[s], self.x[s], a.view(shape))  # half the temporaries of b + a (x - b)
            out.append(self.model.input_gradients(points, lambda scores, s=s: watched(scores, watch, self.target[s]),
                                                  create_graph=self.create_graph, fold_bn=self.fold_bn))
        return torch.cat(out).view(tuple(alphas.shape) + self.x.shape[1:])


def watched(scores: torch.Tensor, watch, target: torch.Tensor) -> torch.Tensor:
    """The targets to pick, after `watch` (if any) has seen the pass's scores."""
    if watch is not None:
        watch(scores)
    return target


def refined_ig(path: Path, gap: torch.Tensor, tol: float, max_steps, steps, rule: str, kept: int,
               feature_tol=None):
    """IG with each sample refined until |delta| <= tol |gap| (and, with `feature_tol`, the last
    refinement moved its values by at most that) or `max_steps` points.

    Checks start at the first level with at least `steps` points (default 3; on ReLU nets,
    where few points can meet the tolerance by chance cancellation, ask for more). Samples are
    refined a group at a time, so that the gradients kept for reuse take no more memory than
    `kept` bytes. Returns the values and extras as `ig` does, with the rule
    used (`rule='auto'` resolved).
    """
    last = max_level(max_steps)
    first = min(first_level(steps), last)
    x, n = path.x, len(path.x)
    group = max(1, kept // ((2**last + 1) * x[0].numel() * x.element_size()))
    values, used = torch.zeros_like(x), torch.zeros(n, dtype=torch.long, device=x.device)
    change = torch.zeros(n, dtype=torch.float64, device=x.device)
    for start in range(0, n, group):
        samples = torch.arange(start, min(start + group, n), device=x.device)
        part, points, moved, rule = refine_group(path, samples, tol * gap.double().abs(), gap, first, last, rule,
                                                 feature_tol)
        values = values.index_put((samples,), part)
        used[samples], change[samples] = points, moved
    delta = completeness_delta(values, gap)
    error = completeness_error(delta, gap, tol, used, change, feature_tol)
    return values, {"delta": delta.float(), "error": error, "rule": rule}


def refine_group(path: Path, samples, limit, gap, first: int, last: int, rule: str, feature_tol=None):
    """One group's attributions, points used, last change and rule: the nested levels until each
    sample meets its limit, the trapezoid's new points in two halves (`halves`)."""
    x = path.x
    values, used = torch.zeros_like(x[samples]), torch.zeros(len(samples), dtype=torch.long, device=x.device)
    change = torch.zeros(len(samples), dtype=torch.float64, device=x.device)
    active = torch.arange(len(samples), device=x.device)
    grads, rule = first_level_gradients(path, samples, rule)
    previous = level_estimate(path, samples, grads, rule, 0)  # the last whole level's: what `change` is against
    for k in range(1, last + 1):
        grads = widened(grads)  # level k's positions; the new ones, odd, filled as they are taken
        split = torch.zeros((len(active), 2 ** (k - 1)), dtype=torch.bool, device=x.device)
        for part in halves(rule, k):
            s = samples[active]
            cells = cells_to_split(path, s, grads, split, part)
            rows = torch.arange(len(s), device=x.device)[:, None]
            grads[rows, 2 * cells + 1] = path.gradients(s, inside(nodes(rule, k)).to(x.device)[2 * cells + 1])
            split[rows, cells] = True
            estimate = level_estimate(path, s, grads, rule, k, split)
            whole = part != "busiest"  # every old cell halved: level k itself (a part splits every sample alike)
            if k < first or (k == first and not whole):  # no check below `steps` points
                continue
            delta = completeness_delta(estimate, gap[s])  # as the error bar computes it
            moved = relative_change(estimate, previous)
            within = delta.abs() <= limit[s]
            if feature_tol is not None:  # the sum within tol is not enough: each value moved little too,
                # from one whole level to the next (from a half level, the change understates the error)
                within &= (moved <= feature_tol) & whole
            done = within | (k == last and whole)
            values = values.index_put((active[done],), estimate[done])
            used[active[done]], change[active[done]] = 2 ** (k - 1) + 1 + split[done].sum(1), moved[done]
            if not done.any():  # filtering would copy the kept gradients for nothing
                continue
            keep = ~done
            active, grads, split, previous, estimate = (t[keep] for t in (active, grads, split, previous, estimate))
            if not len(active):
                return values, used, change, rule
        previous = estimate
    return values, used, change, rule


def halves(rule: str, k: int) -> tuple[str, ...]:
    """How level k's new points are taken: all at once, or, for the trapezoid from 4 new points on,
    first the half in the old cells where the integrand varies most, then the rest.

    Along a ReLU net's path each value's integrand is a step function, and the trapezoid's
    error comes from the steps inside each cell: halving the cells with the most step first
    removes most of the error for half the points, and a sample that meets its tolerance
    there stops between two levels (on 64 images of the demo CNN, 15-20 % fewer points at
    the same completeness error; the per-feature error rises by less than the points fall).
    Where the steps sit depends on the model (near the baseline on a digits MLP, near the
    input on the demo CNN, evenly on a ResNet-50), so it is measured a sample.
    The higher rules' weights need every point of a level: they take them at once.
    """
    return ("busiest", "rest") if rule == "riemann_trapezoid" and k >= 3 else ("all",)


def cells_to_split(path: Path, samples, grads: torch.Tensor, split: torch.Tensor, part: str) -> torch.Tensor:
    """The old cells (between level k - 1's points, the even positions of `grads`) whose midpoints
    each sample takes now, (samples, cells): all, those not split yet, or the half with the largest
    variation of the values' integrand, |(x - b) (g(right) - g(left))| summed over features."""
    cells = torch.arange(split.shape[1], device=split.device).expand(len(samples), -1)
    if part == "all":
        return cells
    if part == "rest":
        return cells[~split].view(len(samples), -1)
    variation = cell_variation(grads, (path.x[samples] - path.base[samples]).unsqueeze(1))
    return variation.topk(split.shape[1] // 2, dim=1).indices.sort(1).values


def cell_variation(grads: torch.Tensor, scale: torch.Tensor, cells_a_time: int = 8) -> torch.Tensor:
    """sum over features of |scale (g(right) - g(left))| for each cell between the even positions of
    `grads`, (samples, cells), float64. A few cells at a time: their differences (and the float64 copy
    the sum makes) then take a sliver of the kept gradients' memory, not as much again."""
    ends = grads[:, 0::2].detach()
    variation = torch.empty((len(ends), ends.shape[1] - 1), dtype=torch.float64, device=grads.device)
    for start in range(0, variation.shape[1], cells_a_time):
        stop = min(start + cells_a_time, variation.shape[1])
        jumps = (ends[:, start + 1 : stop + 1] - ends[:, start:stop]).mul_(scale).abs_()
        variation[:, start:stop] = jumps.flatten(2).sum(2, dtype=torch.float64)
    return variation


def widened(grads: torch.Tensor) -> torch.Tensor:
    """Gradients on the next level's positions: the old ones at even positions, zeros between."""
    out = grads.new_zeros((len(grads), 2 * grads.shape[1] - 1) + grads.shape[2:])
    out[:, 0::2] = grads
    return out


def level_estimate(path: Path, samples, grads: torch.Tensor, rule: str, k: int, split=None) -> torch.Tensor:
    """The attributions of level k's rule on its points' gradients `grads` (samples, points, ...);
    with `split`, the trapezoid on level k - 1's cells with the marked ones halved."""
    if split is not None and rule == "riemann_trapezoid":
        weights = split_trapezoid_weights(split).to(grads.dtype).unsqueeze(1)  # (samples, 1, points)
    else:
        weights = nested_weights(rule, k).to(path.x.device, grads.dtype)
    # a (points) x (points, features) product a sample: einsum's reduction over the middle axis was
    # 38x slower on (32, 257, 16384) gradients
    summed = torch.matmul(weights, grads.flatten(2)).view((len(grads),) + grads.shape[2:])
    return (path.x[samples] - path.base[samples]) * summed


def split_trapezoid_weights(split: torch.Tensor) -> torch.Tensor:
    """Trapezoid weights (samples, 2 cells + 1) on cells of width 1 / cells, those marked in `split`
    (samples, cells) halved: a whole cell gives each of its ends half its width, a halved one a
    quarter to each end and half to its midpoint (the odd position after its left end)."""
    width = 1 / split.shape[1]
    end = torch.where(split, width / 4, width / 2).double()  # what a cell gives each of its ends
    weights = split.new_zeros((len(split), 2 * split.shape[1] + 1), dtype=torch.float64)
    weights[:, :-2:2] += end
    weights[:, 2::2] += end
    weights[:, 1::2] = split.double() * (width / 2)
    return weights


def relative_change(estimate: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """sum |estimate - previous| / sum |estimate| a sample: what the last refinement moved each value."""
    moved = (estimate - previous).detach().flatten(1).abs().double().sum(1)
    return moved / estimate.detach().flatten(1).abs().double().sum(1).clamp_min(torch.finfo(torch.float64).tiny)


def first_level_gradients(path: Path, samples, rule: str):
    """Level 0's gradients (at 0 and 1, every rule's first points) and the rule, 'auto' resolved
    from the graph these passes record."""
    if rule != "auto":
        return path.gradients(samples, inside(nodes(rule, 0))), rule
    linear = []  # read off the first pass: every pass runs the same graph
    grads = path.gradients(samples, inside(nodes("riemann_trapezoid", 0)),
                           watch=lambda s: None if linear else linear.append(piecewise_linear(s)))
    return grads, "riemann_trapezoid" if linear[0] else "clenshaw_curtis"


def nodes(rule: str, k: int) -> torch.Tensor:
    """The 2^k + 1 positions of level k in [0, 1], ascending; level k - 1's are the even ones."""
    i = torch.arange(2**k + 1, dtype=torch.float64)
    if rule == "clenshaw_curtis":
        return (1 - torch.cos(i * math.pi / 2**k)) / 2
    return i / 2**k


EDGE = 2.0**-20  # how far inside [0, 1] the gradients at the end points are taken (see `inside`)


def inside(alphas: torch.Tensor) -> torch.Tensor:
    """Where to take the gradients for nodes `alphas`: the two ends moved EDGE inside.

    The integral does not see single points, but a rule that weighs the gradient at the
    baseline itself does, and there a ReLU net can sit on its kinks: an all-zero input
    through bias-free convs and fresh batch norms puts every unit at exactly 0, where
    torch's ReLU gradient is 0 (a random ResNet-50's trapezoid was off by 2e-3 of the gap
    at 257 points for that one point). Just inside, the gradient is the path's own limit.
    """
    return alphas.clamp(EDGE, 1 - EDGE)


def nested_weights(rule: str, k: int) -> torch.Tensor:
    """Quadrature weights on level k's points (float64)."""
    if rule == "clenshaw_curtis":
        return clenshaw_curtis_weights(2**k)
    rows = [trapezoid_weights(level, k) for level in range(k + 1)]
    if rule == "riemann_trapezoid":
        return rows[-1]
    for m in range(1, k + 1):  # Richardson: R[l][m] = R[l][m-1] + (R[l][m-1] - R[l-1][m-1]) / (4^m - 1)
        rows = [rows[i] + (rows[i] - rows[i - 1]) / (4**m - 1) for i in range(1, len(rows))]
    return rows[-1]


def trapezoid_weights(level: int, k: int) -> torch.Tensor:
    """The trapezoid rule on level `level`'s points, written on level k's grid."""
    w = torch.zeros(2**k + 1, dtype=torch.float64)
    spacing = 2 ** (k - level)
    w[::spacing] = 1 / 2**level
    w[[0, -1]] /= 2
    return w


def clenshaw_curtis_weights(n: int) -> torch.Tensor:
    """Clenshaw-Curtis weights for the n + 1 Chebyshev extrema mapped to [0, 1] (n even; Waldvogel, 2006)."""
    theta = torch.arange(n + 1, dtype=torch.float64) * math.pi / n
    m = torch.arange(1, n // 2 + 1, dtype=torch.float64)
    b = torch.where(2 * m == n, 1.0, 2.0)
    series = (b / (4 * m**2 - 1) * torch.cos(2 * m * theta[:, None])).sum(1)
    c = torch.full((n + 1,), 2.0, dtype=torch.float64)
    c[[0, -1]] = 1.0
    return c / n * (1 - series) / 2


def max_level(max_steps) -> int:
    """The last trapezoid level k whose 2^k + 1 points stay within `max_steps`."""
    hint = "use an int >= 3 (points a sample at most), e.g. 257"
    if positive_int("max_steps", max_steps, hint) < 3:
        raise BadOption(f"max_steps={max_steps!r} leaves no room to refine", hint)
    return (max_steps - 1).bit_length() - 1


def first_level(steps) -> int:
    """The first level checked: the fewest 2^k + 1 points >= `steps` (default 3)."""
    steps = 3 if steps is None else positive_int("steps", steps, "use a positive int (first points checked), e.g. 5")
    return max(1, (max(steps - 1, 1) - 1).bit_length())


def completeness_delta(values: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    """sum(values) - gap a sample, float64. The sum runs in float64: a float32 sum over a
    64×64 image's values is off by up to ~1e-7 of the gap, as large as what 33 points of
    Clenshaw-Curtis leave on a smooth net, so it decided which samples refined further."""
    return values.detach().flatten(1).double().sum(1) - gap.double()


def completeness_error(delta: torch.Tensor, gap: torch.Tensor, tol, evaluations: torch.Tensor,
                       change: torch.Tensor | None = None, feature_tol=None) -> NumericalError:
    """IG's error bar: |delta| a sample, with the gap `tol` is relative to, the points used and
    (refined to `tol`) what the last refinement moved the values, with the `feature_tol` asked."""
    return NumericalError("completeness", delta.detach().abs().double().cpu().numpy(),
                          gap.detach().abs().double().cpu().numpy(), tol,
                          evaluations.detach().cpu().long().numpy(),  # counts, whatever dtype autocast gave
                          None if change is None else change.detach().cpu().numpy(), feature_tol)
