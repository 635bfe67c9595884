"""Does the model's score follow the explanation? Deletion and insertion curves.

Features are taken in order of decreasing signed attribution (Quantus' default; pass
``np.abs(values)`` to rank by magnitude), ``steps`` chunks at a time:
*deletion* replaces them by a baseline in the input, *insertion* copies them from the
input into the baseline. After each chunk the whole batch is scored once. A faithful
explanation makes the target score fall fast under deletion (low AUC) and rise fast
under insertion (high AUC). Quantus calls the deletion curve "pixel flipping" (one
feature a step) and its patch-wise variant "region perturbation"; Petsiuk et al. (2018,
RISE) named deletion and insertion.

A feature is one entry of ``values``: values of the input's shape rank single entries;
``(N, H, W)`` or ``(N, 1, H, W)`` maps of a ``(N, C, H, W)`` input (CAM methods) rank
pixels, and a pixel is removed in every channel at once.
"""

from __future__ import annotations

import numpy as np

from leanlens.errors import BadInput, BadOption
from leanlens.explain.options import flag, positive_int
from leanlens.metrics.inputs import as_maps, as_numpy, flat
from leanlens.models.wrap import wrap


def deletion_curve(model, x, values, target=None, *, steps: int = 10, baseline=0.0,
                   softmax: bool = True) -> np.ndarray:
    """Target score after removing 0, 1, ..., ``steps`` chunks of the top features, (N, steps + 1).

    Parameters
    ----------
    model : anything `ll.wrap` takes; only its `predict` is used.
    x : the explained batch (N, ...).
    values : the attributions, or an `Explanation` (then its target is the default).
    target : class whose score is followed: None (the explanation's target, else the
        predicted class), an int, or one int a sample.
    steps : chunks the ranked features are split into (Quantus: n_features / features_in_step).
    baseline : what a removed feature becomes: a number or an array broadcasting to x.
    softmax : follow the softmax probability (True, as Quantus) or the raw score.
    """
    return _curve(model, x, values, target, steps, baseline, softmax, insert=False)[0]


def insertion_curve(model, x, values, target=None, *, steps: int = 10, baseline=0.0,
                    softmax: bool = True) -> np.ndarray:
    """Target score after inserting 0, 1, ..., ``steps`` chunks of the top features into the
    baseline, (N, steps + 1); parameters as for `deletion_curve`."""
    return _curve(model, x, values, target, steps, baseline, softmax, insert=True)[0]


def deletion_auc(model, x, values, target=None, *, steps: int = 10, baseline=0.0,
                 softmax: bool = True) -> np.ndarray:
    """Area under the deletion curve over the share of features removed, [0, 1]; lower is better."""
    return _auc(*_curve(model, x, values, target, steps, baseline, softmax, insert=False))


def insertion_auc(model, x, values, target=None, *, steps: int = 10, baseline=0.0,
                  softmax: bool = True) -> np.ndarray:
    """Area under the insertion curve over the share of features inserted, [0, 1]; higher is better."""
    return _auc(*_curve(model, x, values, target, steps, baseline, softmax, insert=True))


def _curve(model, x, values, target, steps, baseline, softmax, insert: bool) -> tuple[np.ndarray, np.ndarray]:
    """The (N, steps + 1) curve and the share of features taken at each of its points."""
    model = wrap(model)
    steps = positive_int("steps", steps, "use a positive int, e.g. steps=10")
    softmax = flag("softmax", softmax)
    if target is None:
        target = getattr(values, "target", None)
    x = as_maps(x, "x")
    v = as_maps(values, "values")
    mask_shape = _mask_shape(v.shape, x.shape)
    ranks = _ranks(flat(v))
    base = _baseline(baseline, x.shape)
    cuts = np.arange(steps + 1) * ranks.shape[1] // steps  # as even as whole features allow
    curve = []
    for cut in cuts:
        taken = (ranks < cut).reshape(mask_shape)
        scores, target = _target_scores(model, np.where(taken, x, base) if insert else np.where(taken, base, x),
                                        target, softmax)  # target=None: fixed by the unperturbed batch
        curve.append(scores)
    return np.stack(curve, axis=1), cuts / ranks.shape[1]


def _mask_shape(v_shape: tuple[int, ...], x_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a feature mask takes to broadcast over x: x's own, or (N, 1, H, W) for pixel maps."""
    shape = (v_shape[0], 1, *v_shape[1:]) if len(v_shape) == 3 and len(x_shape) == 4 else v_shape
    fits = len(shape) == len(x_shape) and shape[0] == x_shape[0] and shape[2:] == x_shape[2:] \
        and shape[1] in (1, x_shape[1])
    if not fits:
        raise BadInput(f"values of shape {v_shape} do not fit x of shape {x_shape}",
                       "pass attributions of x's shape for this batch, or (N, H, W) maps of (N, C, H, W) images")
    return shape


def _ranks(v: np.ndarray) -> np.ndarray:
    """Each feature's place in its sample's order of decreasing attribution (ties: lower index first)."""
    order = np.argsort(-v, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(v.shape[1])[None].repeat(len(v), 0), axis=1)
    return ranks


def _baseline(baseline, x_shape: tuple[int, ...]) -> np.ndarray:
    base = as_numpy(baseline, "baseline").astype(np.float64)
    try:
        base = np.broadcast_to(base, x_shape)
    except ValueError:
        raise BadOption(f"baseline of shape {base.shape} does not broadcast to x's shape {x_shape}",
                        "pass a number or an array of one sample's shape") from None
    if not np.isfinite(base).all():
        raise BadOption("baseline contains nan or inf", "pass finite values, e.g. baseline=0.0")
    return base


def _target_scores(model, x: np.ndarray, target, softmax: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's score for its target class, and the classes (the predicted ones for target=None)."""
    scores = model.predict(x.astype(np.float32)).astype(np.float64)
    if softmax:
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    classes = _classes(target, scores)
    return scores[np.arange(len(scores)), classes], classes


def _classes(target, scores: np.ndarray) -> np.ndarray:
    if target is None:
        return scores.argmax(axis=1)
    t = np.asarray(target.detach().cpu() if hasattr(target, "detach") else target)
    if not np.issubdtype(t.dtype, np.integer) or t.ndim > 1:
        raise BadInput(f"target must be class indices, got {t.dtype} of shape {t.shape}",
                       "pass an int or one int a sample")
    t = np.full(len(scores), t) if t.ndim == 0 else t
    if t.shape != (len(scores),) or (t < 0).any() or (t >= scores.shape[1]).any():
        raise BadInput(f"target {t.tolist()[:5]} is not one class below {scores.shape[1]} for each of "
                       f"{len(scores)} samples", "pass an int or one int a sample")
    return t


def _auc(curve: np.ndarray, shares: np.ndarray) -> np.ndarray:
    return np.trapezoid(curve, shares, axis=1)
