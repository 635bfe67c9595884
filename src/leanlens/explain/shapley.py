"""Shapley values over features: exact enumeration and Kernel SHAP.

Both treat each sample as a game whose players are features (elements, superpixels or
a `feature_mask`, see `leanlens.explain.features`): a coalition's payoff is the target
score of the input with the coalition's features kept and the others set to the
baseline. All coalitions of all samples go through the model as one batched
evaluation (chunked by `batch_size`), and the solve is one batched linear-algebra call
shared by every sample. Values are per feature, spread to the input's shape; `delta`
is each sample's efficiency gap, sum(values per feature) - (f(x) - f(baseline)).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from leanlens.errors import BadOption
from leanlens.explain.errorbars import NumericalError, sample_cap
from leanlens.explain.features import game
from leanlens.explain.kernel_design import CoalitionDraws, Design, kernel_design
from leanlens.explain.kernel_error import (
    PairedRows,
    ScoredCoalitions,
    invert_normal,
    normal_inverse,
    standard_errors,
)
from leanlens.explain.memory import budget_chunk
from leanlens.explain.options import positive_int
from leanlens.explain.registry import method

MAX_EXACT = 16  # 2^16 coalitions a sample


def all_coalitions(d: int) -> torch.Tensor:
    """Every coalition of d features as a boolean (2^d, d) matrix; row m has bit j of m."""
    return (torch.arange(2**d)[:, None] >> torch.arange(d)) & 1 == 1


def shapley_matrix(coalitions: torch.Tensor) -> torch.Tensor:
    """C (M, d) with phi = scores @ C over all 2^d coalitions: +w(|S|-1) if j in S, else -w(|S|).

    w(s) = s! (d-s-1)! / d!, the chance that a random order puts exactly s others before j.
    """
    d = coalitions.shape[1]
    s = torch.arange(d, dtype=torch.float64)
    w = torch.exp(torch.lgamma(s + 1) + torch.lgamma(d - s) - math.lgamma(d + 1))
    size = coalitions.sum(1)
    inside = w[(size - 1).clamp(0, d - 1)][:, None]
    outside = w[size.clamp(0, d - 1)][:, None]
    return torch.where(coalitions, inside, -outside)


@method("shapley", family="perturbation", needs=())
def shapley(model, x, targets, *, feature_mask=None, superpixel=None, baseline="zeros", background=None,
            batch_size: int | None = None, memory=None, seed: int = 0):
    """Exact Shapley values (Shapley, 1953) over at most 16 features, from all 2^d coalitions.

    Costs 2^d - 2 model evaluations a sample beyond x and the baseline (times B with
    `background` rows, which replace the baseline: shap's game with that background).
    Each element of a feature carries the feature's value; `delta` is the efficiency gap (~0).
    """
    g = game(model, x, targets, mask=feature_mask, superpixel=superpixel, baseline=baseline,
             background=background, seed=seed, batch_size=budget_chunk(batch_size, model, x[:1], memory))
    if g.d > MAX_EXACT:
        raise BadOption(f"exact shapley over {g.d} features needs 2^{g.d} model evaluations a sample",
                        f"use superpixel= or a feature_mask with at most {MAX_EXACT} features, or 'kernelshap'")
    coalitions = all_coalitions(g.d)
    inner = g.scores(coalitions[1:-1])  # the empty and full coalitions are the end scores
    scores = torch.cat([g.empty[:, None], inner, g.full[:, None]], dim=1)
    phi = scores @ shapley_matrix(coalitions).to(scores.device)
    delta = phi.sum(1) - (g.full - g.empty)
    return g.spread(phi), {"delta": delta.float(), "base_values": g.empty}


def constrained_wls(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, total: torch.Tensor,
                    inverse: torch.Tensor | None = None) -> torch.Tensor:
    """phi (N, d) minimising sum_m w_m (y[n, m] - z_m . phi_n)^2 subject to sum(phi_n) = total[n].

    One d×d system shared by all samples (the coalitions are). `inverse`: A^-1 when already at hand.
    """
    inverse = normal_inverse(z, w, y.device) if inverse is None else inverse
    b = (z.to(y.device, torch.float64) * w.to(y.device)[:, None]).T @ y.T  # (d, N)
    return constrained_solution(inverse, b, total)


def constrained_solution(inverse: torch.Tensor, b: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """The Lagrange solution phi = A^-1 b - A^-1 1 (1' A^-1 b - total) / (1' A^-1 1), (N, d),
    from A^-1 and b = Z'Wy (d, N)."""
    ab, a1 = inverse @ b, inverse.sum(1, keepdim=True)
    return (ab - a1 * (ab.sum(0, keepdim=True) - total[None, :]) / a1.sum()).T


@method("kernelshap", family="perturbation", needs=())
def kernelshap(model, x, targets, *, samples: int | None = None, tol: float | None = None,
               max_samples: int | None = None, sampler: str = "leverage", feature_mask=None, superpixel=None,
               baseline="zeros", background=None, batch_size: int | None = None, memory=None, seed: int = 0):
    """Kernel SHAP (Lundberg & Lee, 2017): Shapley values from a weighted regression over sampled coalitions.

    `samples` coalitions a sample (default 2d + 2048, at most 2^d - 2) besides x and the
    baseline; every sample shares them. With `tol`, `samples` is the first design (default
    4d + 64) and it doubles, reusing every coalition already scored, until each value's
    standard error is <= tol * |f(x) - f(baseline)| or `max_samples` (default 2^16) are
    used; each sample stops as soon as its own errors are within tol (or within the scores'
    rounding, which tol never asks to beat: the gap is floored at 4 ulps of the end scores / tol). Standard errors
    (Covert & Lee, 2021) come from the sampled strata's spread, linearised through the
    constrained regression, and are the explanation's `error`.
    `sampler='leverage'` (default) shares the draws over coalition sizes as Leverage SHAP
    does (Musco & Witter, 2025); `'kernel'` by kernel weight. Leverage's error is 13-16 %
    lower at 60 features and the same at 10-16 (benchmarks/RESULTS.md, session 8).
    Efficiency holds exactly; `delta` reports it.
    """
    batch_size = budget_chunk(batch_size, model, x[:1], memory)  # its probe differentiates: not in the block below
    start: list[FirstRound] = []  # made once the game knows d, and scored in the end scores' forward pass

    def first(d: int):
        if d == 1:
            return None
        budget, cap = kernel_budgets(d, samples, tol, max_samples)
        draws = CoalitionDraws(d, seed)
        start.append(FirstRound(budget, cap, draws, kernel_design(d, budget, seed, sampler, draws)))
        return start[0].design.z

    # nothing in here is differentiated: inference mode spares each op autograd's bookkeeping (a few %
    # of a call on the 60-feature benchmark). The model's forwards leave it (see leanlens.explain.features);
    # what the method returns is made after it, as ordinary tensors
    with torch.inference_mode():
        g = game(model, x, targets, mask=feature_mask, superpixel=superpixel, baseline=baseline,
                 background=background, seed=seed, batch_size=batch_size, first=first)
        if g.d > 1:
            phi, se, scored = refine_kernelshap(g, start[0], tol, sampler, seed)
    gap, empty, against = g.full - g.empty, g.empty.clone(), g.tolerance_gap(tol).cpu().numpy()
    if g.d == 1:
        exact = NumericalError("standard_error", np.zeros(x.shape), against, tol, np.zeros(len(x)))
        return g.spread(gap[:, None]), {"delta": torch.zeros_like(gap).float(), "error": exact, "base_values": empty}
    delta = phi.sum(1) - gap
    error = NumericalError("standard_error", g.spread(se).cpu().numpy(), against, tol, scored.counts.cpu().numpy())
    return g.spread(phi), {"delta": delta.float(), "error": error, "base_values": empty}


@dataclasses.dataclass(frozen=True)
class FirstRound:
    """KernelSHAP's first design, made before the game's end scores so that one pass scores both."""

    budget: int  # its coalitions
    cap: int  # the most that refining to tol may use
    draws: CoalitionDraws  # every later design draws from these, reusing the first's coalitions
    design: Design


def refine_kernelshap(g, start: FirstRound, tol, sampler: str, seed: int):
    """Values and standard errors (N, d), doubling the design for the samples not yet within `tol`."""
    gap, active = g.full - g.empty, torch.arange(len(g.x), device=g.x.device)
    scored = ScoredCoalitions(g)
    limit = None if tol is None else tol * g.tolerance_gap(tol)
    budget, design = start.budget, start.design
    phi, se = kernel_round(design, scored.of_every_sample(design.z) - g.empty[:, None], gap)
    while tol is not None and budget < start.cap:
        active = active[se[active].max(1).values > limit[active]]
        if not len(active):
            break
        budget = min(2 * budget, start.cap)
        design = kernel_design(g.d, budget, seed, sampler, start.draws)
        y = scored.scores(design.z, active) - g.empty[active, None]
        phi[active], se[active] = kernel_round(design, y, gap[active])
    return phi, se, scored


def kernel_round(design: Design, y: torch.Tensor, gap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and standard errors (n, d) of a design's scores y (n, M, less the empty coalition's)."""
    rows = PairedRows.of(design, y.device)  # each product over the design, once, on half the rows
    inverse = invert_normal(rows.normal())
    values = constrained_solution(inverse, rows.moments(y), gap)
    return values, standard_errors(design, y, values, inverse, rows)


def kernel_budgets(d: int, samples, tol, max_samples) -> tuple[int, int]:
    """The first design's coalitions and the most that refining to `tol` may use."""
    inner = 2**d - 2 if d < 62 else 2**62
    hint = "use an int >= 2, e.g. 2048"
    if samples is not None and positive_int("samples", samples, hint) < 2:
        raise BadOption(f"samples={samples!r} leaves no coalition to regress on", hint)
    cap = sample_cap(tol, max_samples)
    determined = min(2 * d + 2, inner)  # paired coalitions: each pair pins about one direction of d
    cap_said = "max_samples" if max_samples is not None else "the default max_samples"
    for option, said, value in (("samples", "samples", samples), ("max_samples", cap_said, cap)):
        if value is not None and value < determined:  # below, the fit is one of many and its errors read ~0
            raise BadOption(f"{said}={value} coalitions cannot determine {d} Shapley values (at least {determined} "
                            "can)", f"pass {option}>={determined}, or fewer features (superpixel=, feature_mask=, "
                            "or level='word' for texts)")
    if cap is None:
        budget = min(2 * d + 2048, inner) if samples is None else samples
        return min(budget, inner), min(budget, inner)
    first = 4 * d + 64 if samples is None else samples
    return min(first, cap, inner), min(cap, inner)
