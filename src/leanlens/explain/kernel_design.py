"""Kernel SHAP's coalitions: which ones to evaluate, their regression weights, their strata.

Sizes s and d - s form a pair. A pair is taken whole while the budget's share for it
covers all its coalitions; the rest of the budget is split over the remaining pairs
(stratified) and each draws distinct coalitions together with their complements
(antithetic), weighted by its size's kernel mass over the number drawn. The share of a
pair follows its kernel mass (`sampler="kernel"`) or its leverage (`sampler="leverage"`,
Musco & Witter, ICLR 2025: every size carries the same total leverage, so mid sizes,
where most coalitions are, get more draws). The regression weights are the same for both.

Draws are nested: the coalitions drawn for a size at a budget are the first ones drawn
at any larger budget, so refining to a tolerance reuses every earlier evaluation.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from leanlens.errors import BadOption

MAX_ENUMERATE = 100_000  # draw coalitions of one size from the full list below this many
SAMPLERS = ("kernel", "leverage")


@dataclass(frozen=True)
class Stratum:
    """k sampled units of one size pair: rows first[i] and second[i] of the design are unit i."""

    first: torch.Tensor  # row indices
    second: torch.Tensor  # their complements' rows
    population: int  # units the size pair holds: the finite-population correction's N


@dataclass(frozen=True)
class Design:
    z: torch.Tensor  # (M, d) bool coalitions
    w: torch.Tensor  # (M,) float64 regression weights
    strata: tuple[Stratum, ...]  # the sampled (not enumerated) size pairs


def size_mass(d: int, s: int) -> float:
    """Total Shapley-kernel weight of all coalitions of size s (up to a constant)."""
    return (d - 1) / (s * (d - s))


def _size_generator(seed: int, s: int) -> torch.Generator:
    """One stream a size, so that a size's draws do not depend on the other sizes' counts."""
    return torch.Generator().manual_seed(seed * 4099 + s)


def _of_size(d: int, s: int, k: int, paired: bool, seed: int) -> torch.Tensor:
    """The first k distinct random coalitions of size s (bool (k, d)); with `paired`, distinct as {S, not S}."""
    generator = _size_generator(seed, s)
    if math.comb(d, s) <= MAX_ENUMERATE:
        combos = [c for c in itertools.combinations(range(d), s) if not paired or c[0] == 0]
        pick = torch.randperm(len(combos), generator=generator)[:k]
        out = torch.zeros(len(pick), d, dtype=torch.bool)
        out[torch.arange(len(pick))[:, None], torch.tensor([combos[i] for i in pick.tolist()])] = True
        return out
    seen, rows = set(), []
    while len(rows) < k:  # fixed-size rounds, whatever k is: the draws are a prefix of one sequence
        order = torch.rand(256, d, generator=generator).argsort(1)
        draw = torch.zeros(256, d, dtype=torch.bool).scatter_(1, order[:, :s], True)
        if paired:
            draw = torch.where(draw[:, :1], draw, ~draw)
        for row in draw:
            key = np.packbits(row.numpy()).tobytes()
            if key not in seen and len(rows) < k:
                seen.add(key)
                rows.append(row)
    return torch.stack(rows)


def _all_of_size(d: int, size: int) -> torch.Tensor:
    block = torch.tensor(list(itertools.combinations(range(d), size)))
    z = torch.zeros(len(block), d, dtype=torch.bool)
    z[torch.arange(len(block))[:, None], block] = True
    return z


def kernel_design(d: int, budget: int, seed: int, sampler: str = "kernel") -> Design:
    """At most `budget` coalitions with their weights and strata (see the module's docstring).

    With budget >= 2^d - 2 every coalition is used, and the regression is exact.
    """
    if sampler not in SAMPLERS:
        raise BadOption(f"sampler={sampler!r}", "use 'kernel' (shares by kernel weight) or 'leverage' (Leverage SHAP)")
    pairs = [(s, d - s) for s in range(1, d // 2 + 1)]
    mass = [size_mass(d, s) * (1 if s == t else 2) for s, t in pairs]
    share = mass if sampler == "kernel" else [1.0 if s == t else 2.0 for s, t in pairs]
    count = [math.comb(d, s) * (1 if s == t else 2) for s, t in pairs]
    blocks, weights, left, left_share, done = [], [], budget, sum(share), 0
    for (s, t), part, c in zip(pairs, share, count):
        if left * part / left_share < c - 1e-9:
            break
        for size in {s, t}:
            blocks.append(_all_of_size(d, size))
            weights.append(torch.full((len(blocks[-1]),), size_mass(d, size) / len(blocks[-1]), dtype=torch.float64))
        left, left_share, done = left - c, left_share - part, done + 1
    strata = []
    if pairs[done:]:
        for (s, t), k in zip(pairs[done:], _draws(share[done:], left // 2)):
            k = min(int(k), math.comb(d, s) // (2 if s == t else 1))
            if k == 0:
                continue
            z = _of_size(d, s, k, s == t, seed)
            start = sum(len(b) for b in blocks)
            strata.append(Stratum(torch.arange(start, start + k), torch.arange(start + k, start + 2 * k),
                                  math.comb(d, s) // (2 if s == t else 1)))
            blocks += [z, ~z]
            # each size's mass over its coalitions drawn; a self-paired size has 2k of them
            weights.append(torch.full((2 * k,), size_mass(d, s) / (2 * k if s == t else k), dtype=torch.float64))
    if not blocks:
        return Design(torch.zeros(0, d, dtype=torch.bool), torch.zeros(0, dtype=torch.float64), ())
    return Design(torch.cat(blocks), torch.cat(weights), tuple(strata))


def _draws(shares, units: int) -> np.ndarray:
    """`units` split in proportion to `shares`, by largest remainders."""
    exact = np.array(shares) / sum(shares) * units
    draws = np.floor(exact).astype(int)
    draws[np.argsort(draws - exact)[: units - draws.sum()]] += 1
    return draws


def kernel_coalitions(d: int, budget: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The coalitions (bool (M, d)) and regression weights (M,) of `kernel_design`, seeded by `generator`."""
    design = kernel_design(d, budget, generator.initial_seed())
    return design.z, design.w
