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

MAX_ENUMERATE = 4096  # draw coalitions of one size by shuffling the full list up to this many
ROUND = 32  # random coalitions a size a round beyond that: fixed, so that draws are a prefix of one sequence
REPEATS_NEGLIGIBLE = 2**48  # sizes with more coalitions than this skip the repeat check (see `_unseen`)
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


def coalition_keys(z: torch.Tensor) -> list:
    """One hashable key a coalition (row of bool (M, d)): its bits as an int up to 63 features, else bytes."""
    z = z.cpu()
    if z.shape[1] <= 63:
        return (z.long() << torch.arange(z.shape[1])).sum(1).tolist()
    return [bytes(row) for row in np.packbits(z.numpy(), axis=1)]


def _all_of_size(d: int, size: int) -> torch.Tensor:
    flat = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(d), size)), dtype=np.int64)
    z = np.zeros((math.comb(d, size), d), dtype=bool)
    z[np.arange(len(z))[:, None], flat.reshape(len(z), size)] = True
    return torch.from_numpy(z)


class CoalitionDraws:
    """Each size's distinct random coalitions as one sequence, drawn once a call and reused by
    every larger design: a design's draws for a size are the sequence's first k, whatever k is.

    A size with at most MAX_ENUMERATE coalitions is a shuffle of all of them (its own stream);
    the others grow together, a fixed-size round for every such size at once from one stream
    (one vectorised draw instead of one a size), less the coalitions drawn before.
    """

    def __init__(self, d: int, seed: int):
        self.d, self.seed = d, seed
        self.enumerated: dict[int, torch.Tensor] = {}
        self.random_sizes = [s for s in range(1, d // 2 + 1) if math.comb(d, s) > MAX_ENUMERATE]
        self.drawn = {s: torch.zeros(0, d, dtype=torch.bool) for s in self.random_sizes}
        self.seen: dict[int, set] = {s: set() for s in self.random_sizes if math.comb(d, s) < REPEATS_NEGLIGIBLE}
        self.generator = torch.Generator().manual_seed(seed)

    def every(self, s: int) -> torch.Tensor:
        """All coalitions of size s, in a fixed order (kept: designs of every budget ask again)."""
        if s not in self.enumerated:
            self.enumerated[s] = _all_of_size(self.d, s)
        return self.enumerated[s]

    def first(self, s: int, k: int, paired: bool) -> torch.Tensor:
        """The first k distinct coalitions of size s (bool (k, d)); with `paired`, distinct as {S, not S}."""
        if s not in self.drawn:
            every = self.every(s)
            if paired:
                every = every[every[:, 0]]  # one of each {S, not S}: the one holding feature 0
            # its own stream, so that a small size's draws do not depend on the other sizes'
            self.drawn[s] = every[torch.randperm(len(every), generator=torch.Generator().manual_seed(
                self.seed * 4099 + s))]
        while len(self.drawn[s]) < k:
            self._round()
        return self.drawn[s][:k]

    def _round(self) -> None:
        """ROUND new random coalitions for every size too large to enumerate, repeats dropped."""
        sizes = torch.tensor(self.random_sizes)
        order = torch.rand(len(sizes), ROUND, self.d, generator=self.generator, dtype=torch.float64).argsort(-1)
        chosen = (torch.arange(self.d) < sizes[:, None, None]).expand(-1, ROUND, -1)
        draw = torch.zeros(len(sizes), ROUND, self.d, dtype=torch.bool).scatter_(-1, order, chosen)
        for s, rows in zip(self.random_sizes, draw):
            if 2 * s == self.d:  # self-paired: {S, not S} is one unit, written as the one holding feature 0
                rows = torch.where(rows[:, :1], rows, ~rows)
            self.drawn[s] = torch.cat([self.drawn[s], self._unseen(s, rows)])

    def _unseen(self, s: int, rows: torch.Tensor) -> torch.Tensor:
        if s not in self.seen:  # at most 2^16 draws from >= 2^48: a repeat has odds below 2^-17
            return rows
        seen, fresh = self.seen[s], []
        for i, key in enumerate(coalition_keys(rows)):
            if key not in seen:
                seen.add(key)
                fresh.append(i)
        return rows[fresh]


def kernel_design(d: int, budget: int, seed: int, sampler: str = "kernel",
                  draws: CoalitionDraws | None = None) -> Design:
    """At most `budget` coalitions with their weights and strata (see the module's docstring).

    With budget >= 2^d - 2 every coalition is used, and the regression is exact. Pass the
    same `draws` to designs of growing budgets to draw each coalition once.
    """
    if sampler not in SAMPLERS:
        raise BadOption(f"sampler={sampler!r}", "use 'kernel' (shares by kernel weight) or 'leverage' (Leverage SHAP)")
    pairs = [(s, d - s) for s in range(1, d // 2 + 1)]
    mass = [size_mass(d, s) * (1 if s == t else 2) for s, t in pairs]
    share = mass if sampler == "kernel" else [1.0 if s == t else 2.0 for s, t in pairs]
    count = [math.comb(d, s) * (1 if s == t else 2) for s, t in pairs]
    blocks, weights, left, left_share, done = [], [], budget, sum(share), 0
    draws = draws or CoalitionDraws(d, seed)
    for (s, t), part, c in zip(pairs, share, count):
        if left * part / left_share < c - 1e-9:
            break
        for size in {s, t}:
            blocks.append(draws.every(size))
            weights.append(torch.full((len(blocks[-1]),), size_mass(d, size) / len(blocks[-1]), dtype=torch.float64))
        left, left_share, done = left - c, left_share - part, done + 1
    strata, start = [], sum(len(b) for b in blocks)
    if pairs[done:]:
        for (s, t), k in zip(pairs[done:], _draws(share[done:], left // 2)):
            k = min(int(k), math.comb(d, s) // (2 if s == t else 1))
            if k == 0:
                continue
            z = draws.first(s, k, s == t)
            strata.append(Stratum(torch.arange(start, start + k), torch.arange(start + k, start + 2 * k),
                                  math.comb(d, s) // (2 if s == t else 1)))
            blocks += [z, ~z]
            start += 2 * k
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
