"""Kernel SHAP's standard errors, and the scores of coalitions already evaluated.

The constrained regression's solution is linear in b = Z'W y: phi = P b + c, with
P = A^-1 - A^-1 1 1' A^-1 / (1' A^-1 1) and A = Z'WZ. Linearising around the estimate
(Covert & Lee, 2021, do the same for their variance estimate), its sampling error is
P sum_i u_i, one u_i = sum over the unit's two coalitions of w_m z_m r_m (r the
residual) a sampled unit. Units are drawn without replacement within strata (a size
pair), and enumerated sizes add no error, so

    var(phi_j) = sum over strata of (1 - k/K) k/(k-1) sum_i (v_ij - mean_j)^2,  v_i = P u_i,

k units drawn of the K the stratum holds. A stratum of one unit has no spread to measure:
its unit's own v_i^2 stands in (an overestimate on average). All strata are summed in
one pass (`index_add` by stratum), and A^-1 is computed once for the solve and the errors.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from leanlens.explain.kernel_design import Design, coalition_keys

WELL_CONDITIONED = 1e-6  # smallest Cholesky pivot over the largest (condition number up to 1e12)


def normal_inverse(z: torch.Tensor, w: torch.Tensor, device) -> torch.Tensor:
    """(Z'WZ)^+, (d, d) float64: the one matrix the solve and the standard errors share.

    By Cholesky (8x faster than an eigendecomposition at d = 60) when the matrix is well
    conditioned; the pseudo-inverse when a small design leaves it (nearly) singular.
    """
    z = z.to(device, torch.float64)
    normal = z.T @ (w.to(device)[:, None] * z)
    factor, info = torch.linalg.cholesky_ex(normal)
    pivots = factor.diagonal()
    if info == 0 and pivots.min() > WELL_CONDITIONED * pivots.max():
        return torch.cholesky_inverse(factor)
    return torch.linalg.pinv(normal, hermitian=True)


def regression_projection(inverse: torch.Tensor) -> torch.Tensor:
    """P (d, d): how a change in b = Z'W y moves the constrained solution."""
    a1 = inverse.sum(1, keepdim=True)
    return inverse - a1 @ a1.T / a1.sum()


def standard_errors(design: Design, y: torch.Tensor, phi: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """One standard error a value, (N, d) float64; zero where every coalition was enumerated."""
    n, d = phi.shape
    if not len(design.first):
        return torch.zeros(n, d, dtype=torch.float64, device=y.device)
    z = design.z.to(y.device, torch.float64)
    weighted = design.w.to(y.device) * (y - phi @ z.T)  # w_m r_m, (N, M)
    first, second = design.first.to(y.device), design.second.to(y.device)
    population, label = design.population.to(y.device), design.stratum.to(y.device)
    k = torch.bincount(label, minlength=len(population)).double()
    projection = regression_projection(inverse)
    q = z[first] @ projection  # P z for a unit's first coalition; its complement's is P 1 - that
    a, b = weighted[:, first, None], weighted[:, second, None]
    v = torch.addcmul(b * projection.sum(1), a - b, q)  # (N, units, d)
    total = v.new_zeros(n, len(k), d).index_add_(1, label, v)  # by stratum
    squares = v.new_zeros(n, len(k), d).index_add_(1, label, v.square_())
    # sum over units of (v - stratum mean)^2, in one pass: where a stratum's mean dwarfs its spread
    # (a near-additive game) this floors at ~1e-8 |mean| sqrt(k), far below any useful tol
    spread = (squares - total**2 / k[:, None]).clamp_min(0)
    several = (1 - k / population) * k / (k - 1).clamp_min(1)  # without-replacement variance of a sum
    lone = torch.where(k == 1, 1 - 1 / population, 0.0)  # a one-unit stratum: its v^2 stands in
    variance = spread * torch.where(k > 1, several, 0.0)[:, None] + total**2 * lone[:, None]
    return variance.sum(1).sqrt()


class ScoredCoalitions:
    """A game's target scores for coalitions, each (sample, coalition) evaluated once however often
    asked for: samples still refining score only the coalitions new to them."""

    def __init__(self, game):
        self.game = game
        self.keys = coalition_keys(torch.zeros(0, game.d, dtype=torch.bool))  # sorted coalition keys
        self.column = np.zeros(0, dtype=np.int64)  # each key's column of `table`
        self.table = torch.zeros(len(game.x), 0, dtype=torch.float64, device=game.x.device)

    @property
    def counts(self) -> torch.Tensor:
        """Coalitions evaluated so far for each sample, (N,)."""
        return (~self.table.isnan()).sum(1)

    def scores(self, coalitions: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """(len(samples), M) scores of `coalitions`, evaluating only the ones new to those samples."""
        columns = torch.from_numpy(self._columns(coalition_keys(coalitions))).to(self.table.device)
        missing = self.table[samples][:, columns].isnan().any(0)
        if missing.any():
            fresh = restricted(self.game, samples).scores(coalitions[missing.to(coalitions.device)])
            self.table[samples[:, None], columns[missing][None, :]] = fresh
        return self.table[samples][:, columns]

    def _columns(self, keys: np.ndarray) -> np.ndarray:
        """The table column of each key, new keys given new (NaN) columns."""
        new = np.unique(keys[~self._known(keys)])
        if len(new):
            grow = self.table.new_full((len(self.table), len(new)), float("nan"))
            self.table = torch.cat([self.table, grow], 1)
            column = np.concatenate([self.column, self.table.shape[1] - len(new) + np.arange(len(new))])
            order = np.argsort(np.concatenate([self.keys, new]), kind="stable")
            self.keys, self.column = np.concatenate([self.keys, new])[order], column[order]
        return self.column[np.searchsorted(self.keys, keys)]

    def _known(self, keys: np.ndarray) -> np.ndarray:
        if not len(self.keys):
            return np.zeros(len(keys), dtype=bool)
        return self.keys[np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)] == keys


def restricted(game, samples: torch.Tensor):
    """The same game over some of its samples only."""
    baseline = game.baseline if game.averaged else game.baseline[samples]
    return dataclasses.replace(game, x=game.x[samples], baseline=baseline, target=game.target[samples],
                               full=game.full[samples], empty=game.empty[samples])
