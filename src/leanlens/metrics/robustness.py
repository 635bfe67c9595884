"""Does a small change of the input change the explanation much? Max-sensitivity."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from leanlens.errors import BadOption
from leanlens.explain.api import explain
from leanlens.explain.options import generator, positive_int, real
from leanlens.metrics.inputs import as_maps, flat
from leanlens.models.wrap import wrap


def max_sensitivity(model, x, method: str = "saliency", target=None, *, options: Mapping | None = None,
                    perturb_radius: float = 0.02, n_perturb_samples: int = 10, seed: int = 0) -> np.ndarray:
    """Largest relative change of the explanation under small uniform input noise, (N,); lower is better.

    Yeh et al. (2019): the max over ``n_perturb_samples`` draws of δ, uniform in the L∞
    ball of radius ``perturb_radius``, of ‖e(x + δ) − e(x)‖ / ‖e(x)‖ (Frobenius norms). The
    explanation of every noisy batch is `ll.explain` with the same method, options and
    target classes as e(x), so the class explained never moves with the noise. Where
    e(x) is all zero the change is left unnormalised, as Captum's `sensitivity_max` does.
    Captum and Quantus name the options as here (Quantus: MaxSensitivity, nr_samples and
    lower_bound).

    Parameters
    ----------
    model, x, method, target : as for `ll.explain`.
    options : the method's keyword options, as a mapping (they may share names with ours, e.g. seed).
    perturb_radius : the L∞ radius of the noise, in input units.
    n_perturb_samples : noisy batches drawn; each is explained in one `ll.explain` call.
    seed : seeds the noise; the same seed draws the same noise.
    """
    model = wrap(model)
    options = method_options(options)
    radius = real("perturb_radius", perturb_radius, "use a radius > 0 in input units, e.g. 0.02", low=0.0, strict=True)
    draws = positive_int("n_perturb_samples", n_perturb_samples, "use a positive int, e.g. 10")
    noise = generator(seed)
    original = explain(model, x, method, target, **options)
    x = as_maps(x, "x")
    reference = flat(original.values.astype(np.float64))
    norm = np.linalg.norm(reference, axis=1)
    worst = np.zeros(len(x))
    for _ in range(draws):
        delta = (torch.rand(x.shape, generator=noise, dtype=torch.float64) * 2 - 1).numpy() * radius
        moved = flat(explain(model, x + delta, method, original.target, **options).values.astype(np.float64))
        change = np.linalg.norm(moved - reference, axis=1)
        worst = np.maximum(worst, np.divide(change, norm, out=change.copy(), where=norm > 0))
    return worst


def method_options(options) -> dict:
    """The method options handed to a metric as one mapping, copied."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise BadOption(f"options={options!r} is not a mapping",
                        "pass the method's options as a dict, e.g. {'steps': 32}")
    return dict(options)
