"""Kernel SHAP's coalitions: which ones to evaluate, their regression weights, their strata.

Sizes s and d - s form a pair. A pair is taken whole while the budget's share for it
covers all its coalitions; the rest of the budget is split over the remaining pairs
(stratified) and each draws distinct coalitions together with their complements
(antithetic), weighted by its size's kernel mass over the number drawn. The share of a
pair follows its kernel mass (`sampler="kernel"`) or its leverage (`sampler="leverage"`,
Musco & Witter, ICLR 2025: every size carries the same total leverage, so mid sizes,
where most coalitions are, get more draws). The regression weights are the same for both.

Draws are nested: the coalitions drawn for a size at a budget are the first ones drawn
at any larger budget, so refining to a tolerance reuses every earlier evaluation. Each
size's sequence is fixed by the seed and the size alone (counter-based randomness), so
a design is the same whichever designs were asked for before it.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from leanlens.errors import BadOption

MAX_ENUMERATE = 4096  # draw coalitions of one size by shuffling the full list up to this many
SAMPLERS = ("kernel", "leverage")
POPULATION_CAP = 2**1000  # C(d, s) beyond this (d > ~1000) is infinite for the finite-population correction
GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment: 2^64 / golden ratio, odd


@dataclass(frozen=True)
class Design:
    """Coalitions and their regression weights; the sampled ones as units (a coalition and its
    complement), each from a stratum (a size pair) whose population is known. Rows: the enumerated
    coalitions, then every unit's first coalition, then their complements in the same order."""

    z: torch.Tensor  # (M, d) bool coalitions
    w: torch.Tensor  # (M,) float64 regression weights
    first: torch.Tensor  # (U,) rows of the sampled units' coalitions
    second: torch.Tensor  # (U,) their complements' rows
    stratum: torch.Tensor  # (U,) each unit's stratum, 0 .. S-1
    population: torch.Tensor  # (S,) float64 units each stratum holds: the finite-population correction's N


def size_mass(d: int, s: int) -> float:
    """Total Shapley-kernel weight of all coalitions of size s (up to a constant)."""
    return (d - 1) / (s * (d - s))


def coalition_keys(z: torch.Tensor) -> np.ndarray:
    """One sortable key a coalition (row of bool (M, d)): its bits as an int64 up to 63 features
    (fast to sort and search), else its packed bits as a fixed-width bytes scalar."""
    z = z.cpu().numpy()
    if z.shape[1] <= 63:  # bit j of the key is feature j: rows padded to 64 bits, packed as one flat run
        wide = np.zeros((len(z), 64), dtype=bool)  # (packing row by row, or shifting int64s, is 4x slower)
        wide[:, : z.shape[1]] = z
        return np.packbits(wide.reshape(-1), bitorder="little").view("<i8").astype(np.int64, copy=False)
    packed = np.packbits(z, axis=1)
    return packed.view(np.dtype((np.void, packed.shape[1])))[:, 0]


@functools.lru_cache(maxsize=32)  # every call with d features lists the same few small sizes
def _all_of_size(d: int, size: int) -> torch.Tensor:
    flat = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(d), size)), dtype=np.int64)
    z = np.zeros((math.comb(d, size), d), dtype=bool)
    z[np.arange(len(z))[:, None], flat.reshape(len(z), size)] = True
    return torch.from_numpy(z)


def _scramble(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (Steele, Lea & Flood, 2014): a bijection of uint64 whose
    outputs, over consecutive multiples of GOLDEN, pass as independent uniform draws."""
    x = x ^ (x >> np.uint64(30))  # a new array; the rest in place (fewer (R, d) temporaries)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def random_coalitions(d: int, seed: int, sizes: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Candidate `numbers[r]` of size `sizes[r]` for each r, bool (R, d): the sizes[r] features with
    the smallest random keys, each key a function of (seed, size, number, feature) alone."""
    stream = _scramble(_scramble(np.array([seed], dtype=np.uint64)) + sizes.astype(np.uint64))
    # stream + (number d + feature) GOLDEN, as a row term plus a column term: uint64 arithmetic wraps
    # mod 2^64, so the sum is the same bits with one (R, d) pass instead of four
    row = stream + numbers.astype(np.uint64) * np.uint64(d) * GOLDEN
    keys = _scramble(row[:, None] + np.arange(d, dtype=np.uint64) * GOLDEN)
    # a row's sizes[r]-th smallest key is its threshold: a sort and a comparison, 4x cheaper than
    # argsort and scatter; the rare row whose keys tie at the threshold (its next key is equal: sizes
    # are below d) is ranked by argsort
    ordered = np.sort(keys, axis=1)
    threshold, following = np.take_along_axis(ordered, sizes[:, None] - 1 + np.arange(2), axis=1).T
    z = keys <= threshold[:, None]
    tied = np.flatnonzero(following == threshold)
    if len(tied):
        ranks = np.argsort(np.argsort(keys[tied], axis=1, kind="stable"), axis=1)
        z[tied] = ranks < sizes[tied, None]
    return z


class CoalitionDraws:
    """Each size's distinct coalitions as one sequence, drawn once a call and reused by every
    larger design: a design's draws for a size are the sequence's first k, whatever k is.

    A size with at most MAX_ENUMERATE coalitions is a shuffle of all of them. The others are
    candidate 0, 1, 2, ... of `random_coalitions` less repeats; `reserve` draws every size's
    shortfall in one vectorised call, and the candidates a size uses do not depend on how
    many were drawn at a time.
    """

    def __init__(self, d: int, seed: int):
        self.d, self.seed = d, seed
        self.shuffled: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # size -> all its coalitions (or pairs), an order
        self.drawn: dict[int, list[np.ndarray]] = {}  # size -> blocks of its distinct coalitions
        # by size, as NumPy columns: a design asks about 30-odd sizes at once
        self.count = np.zeros(d // 2 + 1, dtype=np.int64)  # distinct coalitions drawn
        self.tried = np.zeros(d // 2 + 1, dtype=np.int64)  # candidates drawn
        self.seen = coalition_keys(torch.zeros(0, d, dtype=torch.bool))  # sorted keys of every draw

    def every(self, s: int) -> torch.Tensor:
        """All coalitions of size s, in a fixed order (shared, and made in KernelSHAP's inference mode
        on first use: do not modify)."""
        return _all_of_size(self.d, s)

    def reserve(self, sizes: np.ndarray, k: np.ndarray) -> None:
        """Draw until each random size sizes[i] holds k[i] distinct coalitions (at most its population)."""
        k = np.where(_listed_column(self.d)[sizes], 0, k)  # listed sizes are shuffled whole, never drawn
        while True:
            short = np.flatnonzero(self.count[sizes] < k)
            if not len(short):
                return
            self._draw(sizes[short], k[short] - self.count[sizes[short]])

    def firsts(self, sizes: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The first k[i] distinct coalitions of each size sizes[i], stacked in that order, bool (sum k, d);
        a self-paired size's are distinct as {S, not S}. NumPy, not torch: converted once, by the design."""
        self.reserve(sizes, k)
        listed, parts = _listed_column(self.d)[sizes].tolist(), [np.zeros((0, self.d), dtype=bool)]
        for s, many, whole in zip(sizes.tolist(), k.tolist(), listed):  # Python numbers: 30-odd sizes a design
            if whole:
                every, order = self._shuffled(s, 2 * s == self.d)
                parts.append(every[order[:many]])  # only the rows asked for: a design takes a few of thousands
                continue
            blocks = self.drawn[s]
            if len(blocks) > 1:
                blocks[:] = [np.concatenate(blocks)]
            parts.append(blocks[0][:many])
        return np.concatenate(parts)

    def _shuffled(self, s: int, paired: bool) -> tuple[np.ndarray, np.ndarray]:
        """All coalitions of size s (one of each {S, not S} when `paired`) and their random order."""
        if s not in self.shuffled:
            every = self.every(s).numpy()
            if paired:
                every = every[every[:, 0]]  # one of each {S, not S}: the one holding feature 0
            # its own stream, so that a small size's order does not depend on the other sizes'
            order = torch.randperm(len(every), generator=torch.Generator().manual_seed(self.seed * 4099 + s))
            self.shuffled[s] = every, order.numpy()
        return self.shuffled[s]

    def _draw(self, sizes: np.ndarray, missing: np.ndarray) -> None:
        """The next candidates of each short size, a quarter more than missing to cover repeats."""
        counts = missing + missing // 4 + 4
        rows = np.repeat(sizes, counts)  # size by size, in runs
        numbers = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts - self.tried[sizes], counts)
        z = random_coalitions(self.d, self.seed, rows, numbers)
        half = np.flatnonzero(2 * rows == self.d)  # self-paired: {S, not S} is one unit, written as the one
        if len(half):  # holding feature 0
            pairs = z[half]
            z[half] = np.where(pairs[:, :1], pairs, ~pairs)
        fresh = self._unseen(z)
        kept, found = z[fresh], np.add.reduceat(fresh, np.cumsum(counts) - counts)
        self.count[sizes] += found
        self.tried[sizes] += counts
        ends = np.cumsum(found).tolist()
        for s, start, end in zip(sizes.tolist(), [0] + ends, ends):  # slices: np.split is 3x slower
            self.drawn.setdefault(s, []).append(kept[start:end])

    def _unseen(self, z: np.ndarray) -> np.ndarray:
        """Which rows are the first of their coalition, counting every earlier draw (sizes never collide)."""
        keys = coalition_keys(torch.from_numpy(z))
        fresh = np.zeros(len(keys), dtype=bool)
        fresh[np.unique(keys, return_index=True)[1]] = True  # first occurrence within this draw
        if len(self.seen):
            at = np.searchsorted(self.seen, keys).clip(max=len(self.seen) - 1)
            fresh &= self.seen[at] != keys
        self.seen = np.sort(np.concatenate([self.seen, keys[fresh]]))
        return fresh


def kernel_design(d: int, budget: int, seed: int, sampler: str = "kernel",
                  draws: CoalitionDraws | None = None) -> Design:
    """At most `budget` coalitions with their weights and units (see the module's docstring).

    Rows: the sizes taken whole, then every drawn coalition, then their complements in the
    same order. With budget >= 2^d - 2 every coalition is used, and the regression is exact.
    Pass the same `draws` to designs of growing budgets to draw each coalition once.
    """
    whole, sizes, k = design_plan(d, budget, sampler)
    draws = draws or CoalitionDraws(d, seed)
    blocks = [draws.every(size) for size in whole]
    weights = [torch.full((len(b),), size_mass(d, s) / len(b), dtype=torch.float64) for s, b in zip(whole, blocks)]
    start = sum(len(b) for b in blocks)
    drawn = torch.from_numpy(draws.firsts(sizes, k))  # every size's new draws in one vectorised call
    # the per-unit columns in NumPy (np.repeat is 4x torch's repeat_interleave at these sizes), then torch
    half = 2 * sizes == d  # a self-paired size: {S, not S} is one unit, and the size has 2k coalitions
    mass, population = (column[sizes] for column in _size_columns(d))
    w_units = torch.from_numpy(np.repeat(mass / np.where(half, 2 * k, k), k))
    units, stratum = np.arange(len(drawn)), np.repeat(np.arange(len(k)), k)
    return Design(torch.cat(blocks + [drawn, ~drawn]), torch.cat(weights + [w_units, w_units]),
                  torch.from_numpy(start + units), torch.from_numpy(start + len(drawn) + units),
                  torch.from_numpy(stratum), torch.from_numpy(population / (half + 1.0)))


@functools.lru_cache(maxsize=32)
def _size_columns(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Each size's kernel mass and (capped) number of coalitions as float64 columns indexed by size,
    computed once per d: every design of a call (and of every call with d features) reads them."""
    sizes = range(d // 2 + 1)
    mass = np.array([size_mass(d, s) if s else np.inf for s in sizes])  # size 0 is never drawn
    return mass, np.array([float(min(math.comb(d, s), POPULATION_CAP)) for s in sizes])


def design_plan(d: int, budget: int, sampler: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The sizes taken whole, and the size pairs s drawn from with their k units (a coalition and its
    complement) each, as two int64 columns."""
    if sampler not in SAMPLERS:
        raise BadOption(f"sampler={sampler!r}", "use 'kernel' (shares by kernel weight) or 'leverage' (Leverage SHAP)")
    pairs, share, count = _pair_columns(d, sampler)
    whole, left, left_share, done = [], budget, sum(share), 0
    for (s, t), part, c in zip(pairs, share, count):
        if c > budget or left * part / left_share < c - 1e-9:  # c > budget first: c may exceed any float
            break
        whole += sorted({s, t})
        left, left_share, done = left - c, left_share - part, done + 1
    if not pairs[done:]:
        return whole, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    units = np.minimum(_draws(share[done:], left // 2), _units_held(d)[done + 1 :])  # pair done is size done + 1
    drawn = np.flatnonzero(units)
    return whole, drawn + done + 1, units[drawn]


@functools.lru_cache(maxsize=64)
def _pair_columns(d: int, sampler: str) -> tuple[list[tuple[int, int]], list[float], list[int]]:
    """Each size pair (s, d - s), its share of the draws and its number of coalitions: functions of d
    and the sampler alone, listed once (30 binomials a design at d = 60 were half of `design_plan`).
    Shared: do not modify."""
    pairs = [(s, d - s) for s in range(1, d // 2 + 1)]
    mass = [size_mass(d, s) * (1 if s == t else 2) for s, t in pairs]
    share = mass if sampler == "kernel" else [1.0 if s == t else 2.0 for s, t in pairs]
    return pairs, share, [math.comb(d, s) * (1 if s == t else 2) for s, t in pairs]


@functools.lru_cache(maxsize=32)
def _listed_column(d: int) -> np.ndarray:
    """Whether each size s <= d/2 is few enough to list and shuffle whole (else its coalitions are
    drawn), as a bool column (shared: do not modify)."""
    return np.array([math.comb(d, s) <= MAX_ENUMERATE for s in range(d // 2 + 1)])


@functools.lru_cache(maxsize=32)
def _units_held(d: int) -> np.ndarray:
    """The units (a coalition and its complement) each size pair s <= d/2 holds, by s, capped where
    an int64 ends (no design draws that many). Shared: do not modify."""
    return np.array([min(math.comb(d, s) // (2 if 2 * s == d else 1), 2**62) for s in range(d // 2 + 1)])


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
