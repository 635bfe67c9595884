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
from leanlens.explain.errorbars import NumericalError
from leanlens.explain.features import game
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


def weighted_ridge(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients (N, d) and weighted R² (N,) of y[n] ~ b_n + z . c_n, ridge on c only.

    Minimises sum_m w_m (y[n, m] - b_n - z_m . c_n)^2 + alpha |c_n|^2: scikit-learn's
    `Ridge(alpha).fit(z, y[n], sample_weight=w)`, so alpha's effect shrinks as `samples` grows
    (the weighted error is a sum over samples, the penalty is not).
    """
    z = z.to(y.device, torch.float64)
    w = w.to(y.device)
    share = w / w.sum()
    centred = z - share @ z
    yc = y - y @ share[:, None]  # (N, M)
    a = centred.T @ (w[:, None] * centred) + alpha * torch.eye(z.shape[1], dtype=torch.float64, device=y.device)
    # pinv: with alpha = 0 a feature that never varies leaves the system singular; take the least-norm fit.
    coef = (torch.linalg.pinv(a, hermitian=True) @ ((centred * w[:, None]).T @ yc.T)).T  # (N, d)
    residual = yc - coef @ centred.T
    total = (yc**2) @ share
    unexplained = (residual**2) @ share
    r2 = torch.where(total > 0, 1 - unexplained / total.clamp_min(1e-300), torch.ones_like(total))
    return coef, r2


@method("lime", family="perturbation", needs=())
def lime(model, x, targets, *, samples: int = 1000, feature_mask=None, superpixel=None, baseline="zeros",
         background=None, kernel_width: float = 0.25, alpha: float = 1e-6, batch_size: int | None = None, memory=None,
         seed: int = 0):
    """LIME (Ribeiro et al., 2016): coefficients of a locally weighted linear fit over feature coalitions.

    `samples` coalitions a sample (the first is x itself), weighted by
    exp(-D² / (2 kernel_width²)), D the cosine distance between the coalition's binary
    vector and the all-on one (as the `lime` package does for images; Captum's default
    kernel has the same form but measures D between perturbed inputs, width 1.0).
    `alpha` is scikit-learn's Ridge penalty. Each element of a feature carries the
    feature's coefficient; `score` is each fit's weighted R², also its `error` (LIME has no
    error bar of its own: R² says how much of the model's local behaviour the fit explains).
    """
    samples = positive_int("samples", samples, "use a positive int, e.g. 1000")
    kernel_width = real("kernel_width", kernel_width, "use a positive number, e.g. 0.25", low=0, strict=True)
    alpha = real("alpha", alpha, "use a finite ridge penalty >= 0, e.g. 1e-6", low=0)
    g = game(model, x, targets, mask=feature_mask, superpixel=superpixel, baseline=baseline,
             background=background, seed=seed, batch_size=budget_chunk(batch_size, model, x[:1], memory))
    z, w = lime_design(g.d, samples, kernel_width, seed)
    y = torch.cat([g.full[:, None], g.scores(z[1:])], dim=1)  # the all-on coalition is x
    coef, r2 = weighted_ridge(z, w, y, alpha)
    fit = NumericalError("fit_r2", r2.cpu().numpy(), evaluations=np.full(len(x), samples))
    return g.spread(coef), {"score": r2.float(), "error": fit}
