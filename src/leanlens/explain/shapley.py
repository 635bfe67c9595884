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

import itertools
import math

import numpy as np
import torch

from leanlens.errors import BadOption
from leanlens.explain.features import game
from leanlens.explain.options import generator, positive_int
from leanlens.explain.registry import method

MAX_EXACT = 16  # 2^16 coalitions a sample
MAX_ENUMERATE = 100_000  # draw coalitions of one size from the full list below this many


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
            batch_size: int | None = 1024, seed: int = 0):
    """Exact Shapley values (Shapley, 1953) over at most 16 features, from all 2^d coalitions.

    Costs 2^d - 2 model evaluations a sample beyond x and the baseline (times B with
    `background` rows, which replace the baseline: shap's game with that background).
    Each element of a feature carries the feature's value; `delta` is the efficiency gap (~0).
    """
    g = game(model, x, targets, mask=feature_mask, superpixel=superpixel, baseline=baseline,
             background=background, seed=seed, batch_size=batch_size)
    if g.d > MAX_EXACT:
        raise BadOption(f"exact shapley over {g.d} features needs 2^{g.d} model evaluations a sample",
                        f"use superpixel= or a feature_mask with at most {MAX_EXACT} features, or 'kernelshap'")
    coalitions = all_coalitions(g.d)
    inner = g.scores(coalitions[1:-1])  # the empty and full coalitions are the end scores
    scores = torch.cat([g.empty[:, None], inner, g.full[:, None]], dim=1)
    phi = scores @ shapley_matrix(coalitions).to(scores.device)
    delta = phi.sum(1) - (g.full - g.empty)
    return g.spread(phi), {"delta": delta.float(), "base_values": g.empty}


def size_mass(d: int, s: int) -> float:
    """Total Shapley-kernel weight of all coalitions of size s (up to a constant)."""
    return (d - 1) / (s * (d - s))


def _of_size(d: int, s: int, k: int, paired: bool, generator: torch.Generator) -> torch.Tensor:
    """k distinct random coalitions of size s (bool (k, d)); with `paired`, distinct as {S, not S}."""
    if math.comb(d, s) <= MAX_ENUMERATE:
        combos = [c for c in itertools.combinations(range(d), s) if not paired or c[0] == 0]
        pick = torch.randperm(len(combos), generator=generator)[:k]
        out = torch.zeros(len(pick), d, dtype=torch.bool)
        out[torch.arange(len(pick))[:, None], torch.tensor([combos[i] for i in pick.tolist()])] = True
        return out
    seen, rows = set(), []
    while len(rows) < k:  # far more coalitions than draws: duplicates are rare
        order = torch.rand(2 * k, d, generator=generator).argsort(1)
        draw = torch.zeros(2 * k, d, dtype=torch.bool).scatter_(1, order[:, :s], True)
        if paired:
            draw = torch.where(draw[:, :1], draw, ~draw)
        for row in draw:
            key = np.packbits(row.numpy()).tobytes()
            if key not in seen and len(rows) < k:
                seen.add(key)
                rows.append(row)
    return torch.stack(rows)


def kernel_coalitions(d: int, budget: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """At most `budget` coalitions (bool (M, d)) and their regression weights (M,) float64.

    Sizes s and d - s form a pair. Pairs are taken whole, smallest s first, while the
    budget's share for a pair (by kernel mass) covers all its coalitions; the rest of the
    budget is split over the remaining pairs in proportion to their mass (stratified),
    drawing distinct coalitions together with their complements (antithetic), each
    weighted by its size's mass over the number drawn. With budget >= 2^d - 2 every
    coalition is used, and the regression returns the exact Shapley values.
    """
    pairs = [(s, d - s) for s in range(1, d // 2 + 1)]
    mass = [size_mass(d, s) * (1 if s == t else 2) for s, t in pairs]
    count = [math.comb(d, s) * (1 if s == t else 2) for s, t in pairs]
    blocks, weights, left, left_mass = [], [], budget, sum(mass)
    done = 0
    for (s, t), m, c in zip(pairs, mass, count):
        if left * m / left_mass < c - 1e-9:
            break
        for size in {s, t}:
            block = torch.tensor(list(itertools.combinations(range(d), size)))
            z = torch.zeros(len(block), d, dtype=torch.bool)
            z[torch.arange(len(block))[:, None], block] = True
            blocks.append(z)
            weights.append(torch.full((len(z),), size_mass(d, size) / len(z), dtype=torch.float64))
        left, left_mass, done = left - c, left_mass - m, done + 1
    rest = pairs[done:]
    if rest:
        share = np.array(mass[done:]) / left_mass * (left // 2)
        draws = np.floor(share).astype(int)
        draws[np.argsort(draws - share)[: left // 2 - draws.sum()]] += 1  # largest remainders
        for (s, t), k in zip(rest, draws):
            k = min(int(k), math.comb(d, s) // (2 if s == t else 1))
            if k == 0:
                continue
            z = _of_size(d, s, k, s == t, generator)
            blocks += [z, ~z]
            # each size's mass over its coalitions drawn; a self-paired size has 2k of them
            weights.append(torch.full((2 * k,), size_mass(d, s) / (2 * k if s == t else k), dtype=torch.float64))
    if not blocks:
        return torch.zeros(0, d, dtype=torch.bool), torch.zeros(0, dtype=torch.float64)
    return torch.cat(blocks), torch.cat(weights)


def constrained_wls(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """phi (N, d) minimising sum_m w_m (y[n, m] - z_m . phi_n)^2 subject to sum(phi_n) = total[n].

    One d×d system shared by all samples (the coalitions are): the Lagrange solution
    phi = A^-1 b - A^-1 1 (1' A^-1 b - total) / (1' A^-1 1), with A = Z'WZ, b = Z'Wy.
    """
    z = z.to(y.device, torch.float64)
    a = z.T @ (w.to(y.device)[:, None] * z)
    b = (z * w.to(y.device)[:, None]).T @ y.T  # (d, N)
    ones = torch.ones(len(a), 1, dtype=torch.float64, device=y.device)
    inverse = torch.linalg.pinv(a, hermitian=True)
    ab, a1 = inverse @ b, inverse @ ones
    return (ab - a1 * (ab.sum(0, keepdim=True) - total[None, :]) / a1.sum()).T


@method("kernelshap", family="perturbation", needs=())
def kernelshap(model, x, targets, *, samples: int | None = None, feature_mask=None, superpixel=None,
               baseline="zeros", background=None, batch_size: int | None = 1024, seed: int = 0):
    """Kernel SHAP (Lundberg & Lee, 2017): Shapley values from a weighted regression over sampled coalitions.

    `samples` coalitions a sample (default 2d + 2048, at most 2^d - 2) besides x and the
    baseline; every sample shares them. Efficiency holds exactly; `delta` reports it.
    """
    g = game(model, x, targets, mask=feature_mask, superpixel=superpixel, baseline=baseline,
             background=background, seed=seed, batch_size=batch_size)
    d, gap = g.d, g.full - g.empty
    if d == 1:
        return g.spread(gap[:, None]), {"delta": torch.zeros_like(gap).float(), "base_values": g.empty}
    inner = 2**d - 2 if d < 62 else math.inf
    if samples is not None and positive_int("samples", samples, "use an int >= 2, e.g. 2048") < 2:
        raise BadOption(f"samples={samples!r} leaves no coalition to regress on", "use an int >= 2, e.g. 2048")
    budget = min(2 * d + 2048, inner) if samples is None else samples
    z, w = kernel_coalitions(d, int(min(budget, inner)), generator(seed))
    y = g.scores(z) - g.empty[:, None]
    phi = constrained_wls(z, w, y, gap)
    delta = phi.sum(1) - gap
    return g.spread(phi), {"delta": delta.float(), "base_values": g.empty}
