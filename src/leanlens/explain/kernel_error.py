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

import torch

from leanlens.explain.kernel_design import Design, coalition_keys


def normal_inverse(z: torch.Tensor, w: torch.Tensor, device) -> torch.Tensor:
    """(Z'WZ)^+, (d, d) float64: the one matrix the solve and the standard errors share."""
    z = z.to(device, torch.float64)
    return torch.linalg.pinv(z.T @ (w.to(device)[:, None] * z), hermitian=True)


def regression_projection(inverse: torch.Tensor) -> torch.Tensor:
    """P (d, d): how a change in b = Z'W y moves the constrained solution."""
    a1 = inverse.sum(1, keepdim=True)
    return inverse - a1 @ a1.T / a1.sum()


def standard_errors(design: Design, y: torch.Tensor, phi: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """One standard error a value, (N, d) float64; zero where every coalition was enumerated."""
    n, d = phi.shape
    if not design.strata:
        return torch.zeros(n, d, dtype=torch.float64, device=y.device)
    z = design.z.to(y.device, torch.float64)
    weighted = design.w.to(y.device) * (y - phi @ z.T)  # w_m r_m, (N, M)
    q = z @ regression_projection(inverse)  # row m: P z_m
    first = torch.cat([s.first for s in design.strata]).to(y.device)
    second = torch.cat([s.second for s in design.strata]).to(y.device)
    k = torch.tensor([len(s.first) for s in design.strata], dtype=torch.float64, device=y.device)
    population = torch.tensor([s.population for s in design.strata], dtype=torch.float64, device=y.device)
    label = torch.repeat_interleave(torch.arange(len(k), device=y.device), k.long())
    v = weighted[:, first, None] * q[first] + weighted[:, second, None] * q[second]  # (N, units, d)
    mean = torch.zeros(n, len(k), d, dtype=torch.float64, device=y.device).index_add_(1, label, v) / k[:, None]
    spread = torch.zeros_like(mean).index_add_(1, label, (v - mean[:, label]) ** 2)
    several = (1 - k / population) * k / (k - 1).clamp_min(1)  # without-replacement variance of a sum
    lone = torch.where(k == 1, 1 - 1 / population, 0.0)  # a one-unit stratum: its v^2 stands in
    variance = spread * torch.where(k > 1, several, 0.0)[:, None] + mean**2 * lone[:, None]
    return variance.sum(1).sqrt()


class ScoredCoalitions:
    """A game's target scores for coalitions, each (sample, coalition) evaluated once however often
    asked for: samples still refining score only the coalitions new to them."""

    def __init__(self, game):
        self.game = game
        self.column: dict = {}  # coalition key -> column of `table`
        self.table = torch.zeros(len(game.x), 0, dtype=torch.float64, device=game.x.device)

    @property
    def counts(self) -> torch.Tensor:
        """Coalitions evaluated so far for each sample, (N,)."""
        return (~self.table.isnan()).sum(1)

    def scores(self, coalitions: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """(len(samples), M) scores of `coalitions`, evaluating only the ones new to those samples."""
        keys = coalition_keys(coalitions)
        for key in keys:
            self.column.setdefault(key, len(self.column))
        grow = len(self.column) - self.table.shape[1]
        if grow:
            self.table = torch.cat([self.table, self.table.new_full((len(self.table), grow), float("nan"))], 1)
        columns = torch.tensor([self.column[k] for k in keys], device=self.table.device)
        missing = self.table[samples][:, columns].isnan().any(0)
        if missing.any():
            fresh = restricted(self.game, samples).scores(coalitions[missing.to(coalitions.device)])
            self.table[samples[:, None], columns[missing][None, :]] = fresh
        return self.table[samples][:, columns]


def restricted(game, samples: torch.Tensor):
    """The same game over some of its samples only."""
    baseline = game.baseline if game.averaged else game.baseline[samples]
    return dataclasses.replace(game, x=game.x[samples], baseline=baseline, target=game.target[samples],
                               full=game.full[samples], empty=game.empty[samples])
