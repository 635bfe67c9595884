"""LIME (Ribeiro et al., 2016): a weighted linear surrogate of the model around each sample.

Coalitions of features (see `leanlens.explain.features`) are drawn as in LIME for
images: each feature on with probability 1/2, plus the all-on coalition (the sample
itself). A coalition z is weighted by exp(-D(z)^2 / kernel_width^2), D the cosine
distance between z and the all-on vector, 1 - sqrt(|z| / d) (1 for the empty one).
A weighted ridge regression with an intercept, fitted for every sample at once (the
coalitions and weights are shared, so one d×d system serves the whole batch), gives
one coefficient a feature; its weighted R² is returned as `score`.
"""

from __future__ import annotations

import torch

from leanlens.explain.features import game
from leanlens.explain.options import generator, positive_int, real
from leanlens.explain.registry import method


def lime_coalitions(d: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """`samples` coalitions (bool (samples, d)): the all-on one, then uniform random ones."""
    z = torch.rand(samples, d, generator=generator) < 0.5
    z[0] = True
    return z


def lime_weights(z: torch.Tensor, kernel_width: float) -> torch.Tensor:
    """exp(-D^2 / width^2) with D = 1 - cos(z, all-on) = 1 - sqrt(|z| / d), float64."""
    distance = 1 - torch.sqrt(z.double().mean(1))
    return torch.exp(-(distance**2) / kernel_width**2)


def weighted_ridge(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients (N, d) and weighted R² (N,) of y[n] ~ b_n + z . c_n, ridge on c only.

    The weights are normalised to sum to 1, so `alpha` does not depend on `samples`.
    """
    z = z.to(y.device, torch.float64)
    w = (w / w.sum()).to(y.device)
    centred = z - w @ z
    yc = y - y @ w[:, None]  # (N, M)
    a = centred.T @ (w[:, None] * centred) + alpha * torch.eye(z.shape[1], dtype=torch.float64, device=y.device)
    # pinv: with alpha = 0 and few samples the system can be singular; take the least-norm fit.
    coef = (torch.linalg.pinv(a, hermitian=True) @ ((centred * w[:, None]).T @ yc.T)).T  # (N, d)
    residual = yc - coef @ centred.T
    total = (yc**2) @ w
    unexplained = (residual**2) @ w
    r2 = torch.where(total > 0, 1 - unexplained / total.clamp_min(1e-300), torch.ones_like(total))
    return coef, r2


@method("lime", family="perturbation", needs=())
def lime(model, x, targets, *, samples: int = 1000, feature_mask=None, superpixel=None, baseline="zeros",
         kernel_width: float = 0.25, alpha: float = 1e-6, batch_size: int | None = 1024, seed: int = 0):
    """LIME (Ribeiro et al., 2016): coefficients of a locally weighted linear fit over feature coalitions.

    `samples` coalitions a sample (the first is x itself), weighted by a cosine-distance
    kernel of width `kernel_width`; `alpha` is the ridge penalty. Each element of a
    feature carries the feature's coefficient; `score` is each fit's weighted R².
    """
    samples = positive_int("samples", samples, "use a positive int, e.g. 1000")
    kernel_width = real("kernel_width", kernel_width, "use a positive number, e.g. 0.25", low=0, strict=True)
    alpha = real("alpha", alpha, "use a finite ridge penalty >= 0, e.g. 1e-6", low=0)
    g = game(model, x, targets, mask=feature_mask, superpixel=superpixel, baseline=baseline,
             seed=seed, batch_size=batch_size)
    z = lime_coalitions(g.d, samples, generator(seed))
    y = torch.cat([g.full[:, None], g.scores(z[1:])], dim=1)  # the all-on coalition is x
    coef, r2 = weighted_ridge(z, lime_weights(z, kernel_width), y, alpha)
    return g.spread(coef), {"score": r2.float()}
