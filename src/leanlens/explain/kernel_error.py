"""Kernel SHAP's standard errors, and the scores of coalitions already evaluated.

The constrained regression's solution is linear in b = Z'W y: phi = P b + c, with
P = A^-1 - A^-1 1 1' A^-1 / (1' A^-1 1) and A = Z'WZ. Linearising around the estimate
(Covert & Lee, 2021, do the same for their variance estimate), its sampling error is
P sum_i u_i, one u_i = sum over the unit's two coalitions of w_m z_m r_m (r the
residual) a sampled unit. Units are drawn without replacement within strata (a size
pair), and enumerated sizes add no error, so

    var(phi_j) = sum over strata of (1 - k/K) k/(k-1) sum_i (v_ij - mean_j)^2,  v_i = P u_i,

k units drawn of the K the stratum holds. A stratum of one unit has no spread to measure:
its unit's own v_i^2 stands in (an overestimate on average). As sum v^2 - (sum v)^2 / k a
stratum, the first part of every stratum is one matrix product and the second one
`index_add` by stratum; A^-1 is computed once for the solve and the errors.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from leanlens.explain.kernel_design import Design, coalition_keys

WELL_CONDITIONED = 1e-6  # smallest Cholesky pivot over the largest (condition number up to 1e12)


def normal_inverse(z: torch.Tensor, w: torch.Tensor, device) -> torch.Tensor:
    """(Z'WZ)^+, (d, d) float64: the one matrix the solve and the standard errors share."""
    z = z.to(device, torch.float64)
    return invert_normal(z.T @ (w.to(device)[:, None] * z))


def invert_normal(normal: torch.Tensor) -> torch.Tensor:
    """A normal matrix's inverse: by Cholesky (8x faster than an eigendecomposition at d = 60)
    when it is well conditioned; the pseudo-inverse when a small design leaves it (nearly) singular."""
    factor, info = torch.linalg.cholesky_ex(normal)
    low, high = factor.diagonal().aminmax()  # one op, read as Python numbers: 3x cheaper than tensor compares
    if info.item() == 0 and low.item() > WELL_CONDITIONED * high.item():
        return torch.cholesky_inverse(factor)
    return torch.linalg.pinv(normal, hermitian=True)


@dataclasses.dataclass(frozen=True)
class PairedRows:
    """A design's rows as float64 on the scores' device: the enumerated ones, and each sampled
    unit's first coalition only. A unit's complement shares its weight, so its terms follow from
    the first's (z z' + (1-z)(1-z)' = 2 z z' - z 1' - 1 z' + 1 1'): every product over the design
    touches half the sampled rows."""

    design: Design
    whole: torch.Tensor  # (E, d) enumerated coalitions (the design's first rows)
    half: torch.Tensor  # (U, d) each unit's first coalition
    w_whole: torch.Tensor  # (E,)
    w_half: torch.Tensor  # (U,) each unit's weight, the same for both its coalitions

    @classmethod
    def of(cls, design: Design, device) -> PairedRows:
        z, w = design.z.to(device), design.w.to(device)
        enumerated = len(z) - 2 * len(design.first)  # the design's rows: enumerated, firsts, complements
        first = slice(enumerated, enumerated + len(design.first))
        return cls(design, z[:enumerated].double(), z[first].double(), w[:enumerated], w[first])

    def units(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scores (N, U) of each unit's first coalition and of its complement: two slices of y."""
        e, u = len(self.whole), len(self.half)
        return y[:, e : e + u], y[:, e + u : e + 2 * u]

    def normal(self) -> torch.Tensor:
        """Z'WZ, (d, d)."""
        s, h = self.half.T @ self.w_half, self.half
        # doubled after the product, on (d, d) rather than (U, d): exact either way (a power of two)
        pairs = (h.T @ (self.w_half[:, None] * h)).mul_(2).sub_(s[:, None]).sub_(s[None, :]).add_(self.w_half.sum())
        if not len(self.whole):
            return pairs
        return pairs + self.whole.T @ (self.w_whole[:, None] * self.whole)

    def moments(self, y: torch.Tensor) -> torch.Tensor:
        """Z'Wy, (d, N) for scores y (N, M) in the design's row order."""
        first, second = self.units(y)
        pairs = self.half.T @ (self.w_half * (first - second)).T + (second @ self.w_half)[None, :]
        if not len(self.whole):
            return pairs
        return pairs + self.whole.T @ (self.w_whole * y[:, : len(self.whole)]).T


def regression_projection(inverse: torch.Tensor) -> torch.Tensor:
    """P (d, d): how a change in b = Z'W y moves the constrained solution."""
    a1 = inverse.sum(1, keepdim=True)
    return inverse - a1 @ a1.T / a1.sum()


def standard_errors(design: Design, y: torch.Tensor, phi: torch.Tensor, inverse: torch.Tensor,
                    rows: PairedRows | None = None) -> torch.Tensor:
    """One standard error a value, (N, d) float64; zero where every coalition was enumerated."""
    n, d = phi.shape
    if not len(design.first):
        return torch.zeros(n, d, dtype=torch.float64, device=y.device)
    rows = PairedRows.of(design, y.device) if rows is None else rows
    of_squares, of_sums = (torch.from_numpy(f).to(y.device) for f in stratum_factors(design))
    first, second = rows.units(y)
    inside = phi @ rows.half.T  # (N, U): z'phi of a unit's first coalition; its complement's is sum(phi) - that
    # u_i = w (r_first z + r_second (1 - z)), so v_i = P u_i = w (r_first - r_second) P z: P 1 = 0 (a shift
    # of b along 1 leaves the constrained solution where it was), and the complement's term is -P z
    r = rows.w_half * (first - second + phi.sum(1, keepdim=True) - 2 * inside)
    q = rows.half @ regression_projection(inverse)  # P z for a unit's first coalition
    # v laid out (U, N d) so that the stratum sums run over the first axis; r transposed and made
    # contiguous first, else torch lays v out strided and every pass is 10x slower
    v = (r.T.contiguous()[:, :, None] * q[:, None, :]).view(len(q), n * d)
    sums = v.new_zeros(len(of_sums), n * d).index_add_(0, design.stratum.to(y.device), v)
    # a stratum's sum of (v - its mean)^2 is sum v^2 - (sum v)^2 / k; with v_ij = r_i q_ij, the first
    # part over every stratum is one product (r and q squared in place: v no longer needs them)
    spread = r.square_().mul_(of_squares) @ q.square_()  # (N, d)
    # the subtraction over all strata at once: where a stratum's mean dwarfs its spread (a near-additive
    # game) this floors at ~1e-8 |mean| sqrt(k), as it did stratum by stratum, far below any useful tol
    return spread.add_((of_sums @ sums.square_()).view(n, d)).clamp_min_(0).sqrt_()


def stratum_factors(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """The variance's factors, float64: per unit, its stratum's without-replacement factor of a
    spread, (1 - k/K) k/(k-1) (0 for a lone unit), which multiplies sum v^2; per stratum, what
    multiplies (sum v)^2: minus that factor / k, or for a lone unit (1 - 1/K), its v^2 standing in
    for the spread. In NumPy from the design's CPU columns: a dozen ops on 30 numbers cost a few
    microseconds there, 40 in torch."""
    population, stratum = design.population.cpu().numpy(), design.stratum.cpu().numpy()
    k = np.bincount(stratum, minlength=len(population)).astype(np.float64)
    remaining, several, less_one = 1 - k / population, k > 1, np.maximum(k - 1, 1)
    # several: (1 - k/K) k/(k-1) of sum v^2, minus that / k of (sum v)^2; lone: (1 - 1/K) of v^2
    of_squares = np.where(several, remaining * k / less_one, 0.0)[stratum]  # per unit
    of_sums = np.where(several, -remaining / less_one, remaining)  # per stratum
    return of_squares, of_sums


class ScoredCoalitions:
    """A game's target scores for coalitions, each (sample, coalition) evaluated once however often
    asked for: samples still refining score only the coalitions new to them.

    A coalition's column is given in the order coalitions first appear, so the ones a call adds
    are the table's last columns, in the order asked for: their scores are written as one block.
    """

    def __init__(self, game):
        self.game = game
        self.keys = coalition_keys(torch.zeros(0, game.d, dtype=torch.bool))  # sorted coalition keys
        self.column = np.zeros(0, dtype=np.int64)  # each key's column of `table`
        self.table = torch.zeros(len(game.x), 0, dtype=torch.float64, device=game.x.device)
        # which (column, sample) holds a score: kept in NumPy beside the table, so that finding what
        # is new reads no scores back from the device (and a model's NaN score is not re-evaluated)
        self.done = np.zeros((0, len(game.x)), dtype=bool)
        if game.prescored is not None:
            self.record(*game.prescored)

    def record(self, coalitions: torch.Tensor, scores: torch.Tensor) -> None:
        """Scores (N, M) of every sample for coalitions already evaluated (in the end scores' pass)."""
        columns = self._columns(coalition_keys(coalitions))
        self.table.index_copy_(1, torch.from_numpy(columns).to(self.table.device), scores.to(self.table.device))
        self.done[columns] = True

    @property
    def counts(self) -> torch.Tensor:
        """Coalitions evaluated so far for each sample, (N,)."""
        return torch.from_numpy(self.done.sum(0)).to(self.table.device)

    def of_every_sample(self, coalitions: torch.Tensor) -> torch.Tensor:
        """(N, M) scores of every sample: the game's `prescored` block as it is, without a lookup,
        when `coalitions` is the very tensor the end scores' pass scored."""
        prescored = self.game.prescored
        if prescored is not None and coalitions is prescored[0]:
            return prescored[1]
        return self.scores(coalitions, torch.arange(len(self.game.x), device=self.table.device))

    def scores(self, coalitions: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """(len(samples), M) scores of `coalitions`, evaluating only the ones new to those samples."""
        width, device = self.table.shape[1], self.table.device
        columns, rows = self._columns(coalition_keys(coalitions)), samples.cpu().numpy()
        missing = np.flatnonzero(~self.done[columns][:, rows].all(1))
        if len(missing):
            new = columns[missing]
            fresh = restricted(self.game, samples).scores(
                coalitions.index_select(0, torch.from_numpy(missing).to(coalitions.device)))
            if np.array_equal(new, np.arange(width, self.table.shape[1])):  # exactly the columns just added
                self.table[:, width:].index_copy_(0, samples, fresh)
            else:
                self.table[samples[:, None], torch.from_numpy(new).to(device)[None, :]] = fresh
            self.done[new[:, None], rows[None, :]] = True
        # index_select, not advanced indexing: a third of the time for these small tables
        return self.table.index_select(0, samples).index_select(1, torch.from_numpy(columns).to(device))

    def _columns(self, keys: np.ndarray) -> np.ndarray:
        """The table column of each key; keys not seen before get new (NaN) columns, in the order
        they first appear. One search of the known keys, then one stable sort of old and new keys."""
        width = self.table.shape[1]
        columns, known = np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        if len(self.keys):
            at = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
            known, columns = self.keys[at] == keys, self.column[at]
        unknown = np.flatnonzero(~known)
        if not len(unknown):
            return columns
        fresh = keys[unknown]
        by_key = np.argsort(fresh, kind="stable")
        new = fresh[by_key]
        if (new[1:] != new[:-1]).all():  # distinct, as a design's coalitions are: columns in the order asked
            rank = by_key  # sorted key i was asked for at position by_key[i]
            columns[unknown] = width + np.arange(len(fresh))
        else:
            new, first, inverse = np.unique(fresh, return_index=True, return_inverse=True)
            rank = np.empty(len(new), dtype=np.int64)
            rank[np.argsort(first)] = np.arange(len(new))  # the new keys' order of first appearance
            columns[unknown] = width + rank[inverse]
        self.table = torch.cat([self.table, self.table.new_full((len(self.table), len(new)), float("nan"))], 1)
        self.done = np.concatenate([self.done, np.zeros((len(new), self.done.shape[1]), dtype=bool)])
        merged = np.concatenate([self.keys, new])
        order = np.argsort(merged, kind="stable")
        self.keys, self.column = merged[order], np.concatenate([self.column, width + rank])[order]
        return columns


def restricted(game, samples: torch.Tensor):
    """The same game over some of its samples only (the game itself when those are all, in order)."""
    if len(samples) == len(game.x) and torch.equal(samples, torch.arange(len(samples), device=samples.device)):
        return game
    baseline = game.baseline if game.averaged else game.baseline[samples]
    return dataclasses.replace(game, x=game.x[samples], baseline=baseline, target=game.target[samples],
                               full=game.full[samples], empty=game.empty[samples])
