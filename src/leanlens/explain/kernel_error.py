"""Kernel SHAP's standard errors, and the scores of coalitions already evaluated.

The constrained regression's solution is linear in b = Z'W y: phi = P b + c, with
P = A^-1 - A^-1 1 1' A^-1 / (1' A^-1 1) and A = Z'WZ. Linearising around the estimate
(Covert & Lee, 2021, do the same for their variance estimate), its sampling error is
P sum_i u_i, one u_i = sum over the unit's two coalitions of w_m z_m r_m (r the
residual) a sampled unit. Units are drawn without replacement within strata (a size
pair), and enumerated sizes add no error, so

    var(phi_j) = sum over strata of (1 - k/K) k/(k-1) sum_i (v_ij - mean_j)^2,  v_i = P u_i,

k units drawn of the K the stratum holds. A stratum of one unit has no spread to measure:
its unit's own v_i^2 stands in (an overestimate on average).
"""

from __future__ import annotations

import numpy as np
import torch

from leanlens.explain.kernel_design import Design


def regression_projection(z: torch.Tensor, w: torch.Tensor, device) -> torch.Tensor:
    """P (d, d): how a change in b = Z'W y moves the constrained solution."""
    z = z.to(device, torch.float64)
    inverse = torch.linalg.pinv(z.T @ (w.to(device)[:, None] * z), hermitian=True)
    a1 = inverse.sum(1, keepdim=True)
    return inverse - a1 @ a1.T / a1.sum()


def standard_errors(design: Design, y: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """One standard error a value, (N, d) float64; zero where every coalition was enumerated."""
    n, d = phi.shape
    variance = torch.zeros(n, d, dtype=torch.float64, device=y.device)
    if not design.strata:
        return variance
    z = design.z.to(y.device, torch.float64)
    weighted = (design.w.to(y.device) * (y - phi @ z.T))  # w_m r_m, (N, M)
    q = z @ regression_projection(design.z, design.w, y.device)  # row m: P z_m
    for stratum in design.strata:
        first, second = stratum.first.to(y.device), stratum.second.to(y.device)
        v = weighted[:, first, None] * q[first] + weighted[:, second, None] * q[second]  # (N, k, d)
        k = v.shape[1]
        if k == 1:
            variance += v[:, 0] ** 2 * (1 - 1 / stratum.population)
        else:
            spread = ((v - v.mean(1, keepdim=True)) ** 2).sum(1)
            variance += spread * (1 - k / stratum.population) * k / (k - 1)
    return variance.sqrt()


class ScoredCoalitions:
    """A game's target scores for coalitions, each coalition evaluated once however often asked for."""

    def __init__(self, game):
        self.game = game
        self.column: dict[bytes, int] = {}
        self.parts: list[torch.Tensor] = []

    @property
    def count(self) -> int:
        """Coalitions evaluated so far (a sample each)."""
        return len(self.column)

    def scores(self, coalitions: torch.Tensor) -> torch.Tensor:
        """(N, M) scores of `coalitions`, evaluating only those not seen before."""
        keys = [bytes(row) for row in np.packbits(coalitions.cpu().numpy(), axis=1)]
        first_row: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self.column and key not in first_row:
                first_row[key] = i
        if first_row:
            for key in first_row:
                self.column[key] = len(self.column)
            self.parts.append(self.game.scores(coalitions[list(first_row.values())]))
        table = torch.cat(self.parts, dim=1)
        return table[:, torch.tensor([self.column[k] for k in keys], device=table.device)]
