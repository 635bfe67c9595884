"""The straight path of Integrated Gradients, and its refinement to a tolerance.

`Path.weighted_sums` turns (sample, position, weight) rows into per-sample weighted sums
of input gradients, `step` model inputs a pass. `refined_ig` integrates each sample on
its own with the doubling trapezoid rule (2, 3, 5, 9, ... points; each level adds only
the midpoints, so no evaluation is wasted), optionally Romberg-extrapolated, and stops a
sample as soon as its completeness error is within tolerance.

Why Romberg and not Gauss–Kronrod or Clenshaw–Curtis: their weights change for old
points when refined, so every gradient (an input-sized vector) would have to be kept;
Romberg needs only one vector a level. On smooth nets its extrapolation converges fast;
on ReLU nets the integrand is piecewise constant along the path and every rule gains
about the same per point, so the cheapest refinement (reuse everything) wins there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from leanlens.errors import BadOption
from leanlens.explain.errorbars import NumericalError
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
            points = self.base[s] + alphas[rows].view(shape) * (self.x[s] - self.base[s])
            grads = self.model.input_gradients(points, lambda _, s=s: self.target[s], create_graph=self.create_graph,
                                               fold_bn=self.fold_bn)
            summed = summed.index_add(0, s, grads * weights[rows].view(shape))
        return summed

    def level(self, active: torch.Tensor, k: int) -> torch.Tensor:
        """Mean gradient over the points the trapezoid rule adds at level k, for the active samples.

        Level 0 is both ends (weight 1/2 each); level k >= 1 the 2^(k-1) midpoints (2i - 1) / 2^k.
        """
        if k == 0:
            alphas, weights = torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5])
        else:
            alphas = (2 * torch.arange(2 ** (k - 1)) + 1) / 2**k
            weights = torch.full_like(alphas, 1 / 2**k)
        alphas, weights = (a.to(self.x.device, self.x.dtype).repeat(len(active)) for a in (alphas, weights))
        return self.weighted_sums(active.repeat_interleave(len(alphas) // len(active)), alphas, weights)[active]


def refined_ig(path: Path, gap: torch.Tensor, tol: float, max_steps, steps, rule: str):
    """IG with each sample refined until |delta| <= tol |gap| or `max_steps` points.

    Checks start at the first level with at least `steps` points (default 5: fewer can meet
    the tolerance by chance cancellation). Returns the values and extras as `ig` does.
    """
    last = max_level(max_steps)
    first = min(first_level(steps), last)
    x, n = path.x, len(path.x)
    limit = tol * gap.abs()
    values, used = torch.zeros_like(x), torch.zeros(n, dtype=torch.long, device=x.device)
    active = torch.arange(n, device=x.device)
    trapezoid = path.level(active, 0)
    table: list[torch.Tensor] = [trapezoid]  # the previous level's Romberg row
    for k in range(1, last + 1):
        trapezoid = trapezoid / 2 + path.level(active, k)
        table = romberg_row(table, trapezoid) if rule == "romberg" else [trapezoid]
        if k < first:
            continue
        estimate = (x[active] - path.base[active]) * table[-1]
        delta = estimate.detach().flatten(1).sum(1) - gap[active]
        done = (delta.abs() <= limit[active]) | (k == last)
        values = values.index_put((active[done],), estimate[done])
        used[active[done]] = 2**k + 1
        active, table, trapezoid = active[~done], [t[~done] for t in table], trapezoid[~done]
        if not len(active):
            break
    delta = (values.detach().flatten(1).sum(1) - gap).float()
    return values, {"delta": delta, "error": completeness_error(delta, gap, tol, used)}


def max_level(max_steps) -> int:
    """The last trapezoid level k whose 2^k + 1 points stay within `max_steps`."""
    hint = "use an int >= 3 (points a sample at most), e.g. 257"
    if positive_int("max_steps", max_steps, hint) < 3:
        raise BadOption(f"max_steps={max_steps!r} leaves no room to refine", hint)
    return (max_steps - 1).bit_length() - 1


def first_level(steps) -> int:
    """The first trapezoid level checked: the fewest 2^k + 1 points >= `steps` (default 5)."""
    steps = 5 if steps is None else positive_int("steps", steps, "use a positive int (first points checked), e.g. 5")
    return max(1, (max(steps - 1, 1) - 1).bit_length())


def romberg_row(previous: list[torch.Tensor], trapezoid: torch.Tensor) -> list[torch.Tensor]:
    """Richardson extrapolation: R[k][m] = R[k][m-1] + (R[k][m-1] - R[k-1][m-1]) / (4^m - 1)."""
    row = [trapezoid]
    for m, below in enumerate(previous, start=1):
        row.append(row[-1] + (row[-1] - below) / (4**m - 1))
    return row


def completeness_error(delta: torch.Tensor, gap: torch.Tensor, tol, evaluations: torch.Tensor) -> NumericalError:
    """IG's error bar: |delta| a sample, with the gap `tol` is relative to and the points used."""
    return NumericalError("completeness", delta.detach().abs().double().cpu().numpy(),
                          gap.detach().abs().double().cpu().numpy(), tol,
                          evaluations.detach().cpu().numpy().astype(int))
