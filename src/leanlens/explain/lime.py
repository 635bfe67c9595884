"""LIME (Ribeiro et al., 2016): a weighted linear surrogate of the model around each sample.

Coalitions of features (see `leanlens.explain.features`) are drawn as in LIME for
images: each feature on with probability 1/2, plus the all-on coalition (the sample
itself). A coalition z is weighted by the exponential kernel exp(-D(z)^2 / (2 kernel_width^2)),
D the cosine distance between z and the all-on vector, 1 - sqrt(|z| / d) (1 for the
empty one). Kernel and width mean what they mean in the `lime` package's image
explainer (cosine distance on the binary vector, width 0.25) and in Captum's
`get_exp_kernel_similarity_function` (whose default measures the distance between the
perturbed inputs themselves, with width 1.0).

A weighted ridge regression with an intercept, fitted for every sample at once (the
coalitions and weights are shared, so one d×d system serves the whole batch), gives
one coefficient a feature; its weighted R² is returned as `score`.
"""

from __future__ import annotations

import numpy as np
import torch

from leanlens.errors import BadOption
from leanlens.explain.errorbars import NumericalError, sample_cap
from leanlens.explain.features import game
from leanlens.explain.kernel_error import ScoredCoalitions
from leanlens.explain.memory import budget_chunk
from leanlens.explain.options import generator, positive_int, real
from leanlens.explain.registry import method


def lime_coalitions(d: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """`samples` coalitions (bool (samples, d)): the all-on one, then uniform random ones."""
    z = torch.rand(samples, d, generator=generator) < 0.5
    z[0] = True
    return z


def lime_weights(z: torch.Tensor, kernel_width: float) -> torch.Tensor:
    """exp(-D^2 / (2 width^2)) with D = 1 - cos(z, all-on) = 1 - sqrt(|z| / d), float64."""
    distance = 1 - torch.sqrt(z.double().mean(1))
    return torch.exp(-(distance**2) / (2 * kernel_width**2))


def lime_design(d: int, samples: int, kernel_width: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The coalitions (bool (samples, d)) and kernel weights (float64) that `lime` fits on.

    Refuses a draw with no more distinct coalitions than the fit has unknowns (d
    coefficients and an intercept): such a fit interpolates and its R² of 1 means nothing.
    """
    z = lime_coalitions(d, samples, generator(seed))
    distinct = len(torch.unique(z, dim=0))
    if distinct <= d + 1:
        raise BadOption(f"samples={samples} gives {distinct} distinct coalitions, too few to fit {d} features "
                        "and an intercept", f"use samples > {d + 1}, e.g. {max(1000, 10 * (d + 1))}, "
                        "or fewer features (superpixel= or feature_mask=)")
    return z, lime_weights(z, kernel_width)


def _centred(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor):
    """z and y less their w-weighted means (the intercept's share of the fit), and the weights' shares."""
    share = w / w.sum()
    return z - share @ z, y - y @ share[:, None], share


def weighted_ridge(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, alpha: float):
    """Coefficients (N, d), weighted R² (N,) and standard errors (N, d) of y[n] ~ b_n + z . c_n, ridge on c only.

    Minimises sum_m w_m (y[n, m] - b_n - z_m . c_n)^2 + alpha |c_n|^2: scikit-learn's
    `Ridge(alpha).fit(z, y[n], sample_weight=w)`, so alpha's effect shrinks as `samples` grows
    (the weighted error is a sum over samples, the penalty is not). The standard errors are
    the sandwich (heteroscedasticity-robust, HC1) ones of i.i.d. coalitions: how far the
    coefficients are from the ones infinitely many coalitions would give.
    """
    z = z.to(y.device, torch.float64)
    w = w.to(y.device)
    centred, yc, share = _centred(z, w, y)
    a = centred.T @ (w[:, None] * centred) + alpha * torch.eye(z.shape[1], dtype=torch.float64, device=y.device)
    # pinv: with alpha = 0 a feature that never varies leaves the system singular; take the least-norm fit.
    inverse = torch.linalg.pinv(a, hermitian=True)
    coef = (inverse @ ((centred * w[:, None]).T @ yc.T)).T  # (N, d)
    residual = yc - coef @ centred.T
    total = (yc**2) @ share
    unexplained = (residual**2) @ share
    r2 = torch.where(total > 0, 1 - unexplained / total.clamp_min(1e-300), torch.ones_like(total))
    m, d = z.shape
    # var(c_j) = sum_m (w_m r_m)^2 (A^-1 zc_m)_j^2, scaled by m / (m - d - 1) for the fitted unknowns
    variance = ((w * residual) ** 2) @ (centred @ inverse) ** 2 * m / max(m - d - 1, 1)
    return coef, r2, variance.sqrt()


@method("lime", family="perturbation", needs=())
def lime(model, x, targets, *, samples: int = 1000, tol: float | None = None, max_samples: int | None = None,
         feature_mask=None, superpixel=None, baseline="zeros", background=None, kernel_width: float = 0.25,
         alpha: float = 1e-6, batch_size: int | None = None, memory=None, seed: int = 0):
    """LIME (Ribeiro et al., 2016): coefficients of a locally weighted linear fit over feature coalitions.

    `samples` coalitions a sample (the first is x itself), weighted by
    exp(-D² / (2 kernel_width²)), D the cosine distance between the coalition's binary
    vector and the all-on one (as the `lime` package does for images; Captum's default
    kernel has the same form but measures D between perturbed inputs, width 1.0).
    `alpha` is scikit-learn's Ridge penalty. Each element of a feature carries the
    feature's coefficient; `score` is each fit's weighted R², also its `error` (R² says how
    much of the model's local behaviour the fit explains). With `tol`, `samples` is the
    first draw and it doubles, scoring only the new coalitions, until each coefficient's
    sandwich standard error is <= tol * |f(x) - f(baseline)| (a gap floored at 4 ulps of the end
    scores / tol: tol never asks to beat the scores' rounding, so a sample that is its own baseline
    stops) or `max_samples` (default 2^16);
    each sample stops on its own, and the standard errors are the `error`. They bound the
    coefficients' sampling noise (LIME's instability across seeds), not how well a linear
    surrogate describes the model: that is still the R² in `score`.
    """
    samples = positive_int("samples", samples, "use a positive int, e.g. 1000")
    kernel_width = real("kernel_width", kernel_width, "use a positive number, e.g. 0.25", low=0, strict=True)
    alpha = real("alpha", alpha, "use a finite ridge penalty >= 0, e.g. 1e-6", low=0)
    cap = sample_cap(tol, max_samples)
    g = game(model, x, targets, mask=feature_mask, superpixel=superpixel, baseline=baseline,
             background=background, seed=seed, batch_size=budget_chunk(batch_size, model, x[:1], memory))
    if tol is None:
        z, w = lime_design(g.d, samples, kernel_width, seed)
        y = torch.cat([g.full[:, None], g.scores(z[1:])], dim=1)  # the all-on coalition is x
        coef, r2, _ = weighted_ridge(z, w, y, alpha)
        fit = NumericalError("fit_r2", r2.cpu().numpy(), evaluations=np.full(len(x), samples))
        return g.spread(coef), {"score": r2.float(), "error": fit}
    coef, r2, se, scored = refine_lime(g, samples, max(cap, samples), tol, kernel_width, alpha, seed)
    gap = g.tolerance_gap(tol).cpu().numpy()
    error = NumericalError("standard_error", g.spread(se).cpu().numpy(), gap, tol, scored.counts.cpu().numpy())
    return g.spread(coef), {"score": r2.float(), "error": error}


def refine_lime(g, samples: int, cap: int, tol: float, kernel_width: float, alpha: float, seed: int):
    """Coefficients, R² and standard errors, doubling the draw for the samples whose errors are not
    yet within tol * |gap| (every draw is a prefix of the next), and the coalitions scored."""
    n, gap = len(g.x), g.tolerance_gap(tol)
    coef = torch.zeros(n, g.d, dtype=torch.float64, device=g.x.device)
    se, r2 = torch.zeros_like(coef), torch.zeros(n, dtype=torch.float64, device=g.x.device)
    active = torch.arange(n, device=g.x.device)
    scored, budget = ScoredCoalitions(g), samples
    while len(active):
        z, w = lime_design(g.d, budget, kernel_width, seed)
        coef[active], r2[active], se[active] = weighted_ridge(z, w, scored.scores(z, active), alpha)
        if budget >= cap:
            break
        active = active[se[active].max(1).values > tol * gap[active]]
        budget = min(2 * budget, cap)
    return coef, r2, se, scored
