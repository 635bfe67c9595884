"""Features for perturbation methods: which input elements are switched on and off together.

A feature is a set of input elements of one sample: each element on its own (the
default), a k×k superpixel over the last two axes shared across channels, or the ids
of a user `feature_mask`. A coalition is a boolean vector over the features; the
model sees the input where a feature is on and the baseline where it is off. With
`background` rows instead of a baseline, a coalition's score is the mean over those rows
of the score with the off features taken from the row (shap's interventional game with
an independent masker): a removed feature takes values the data really has.

Methods over features return one value a feature, spread to the input's shape: every
element of a feature carries that feature's whole attribution (as Captum does), so a
map sums to the feature total only when each feature is one element.

A caller may run a game's bookkeeping in `torch.inference_mode` (KernelSHAP does); the
model's inputs and forwards never are: a model may take gradients inside its own forward
(under `torch.enable_grad()`), which inference mode would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from leanlens.errors import BadOption
from leanlens.explain.baselines import make_baseline
from leanlens.explain.options import chunk_size, generator, positive_int
from leanlens.explain.targets import class_scores, picked_scores


def feature_mask(x: torch.Tensor, mask=None, superpixel=None) -> torch.Tensor:
    """Feature ids 0..d-1, one per element of a sample: a LongTensor of shape `x.shape[1:]`.

    `mask` may also have a shape that broadcasts to one sample's, e.g. (H, W) for
    (C, H, W) inputs; its ids are relabelled to 0..d-1 in increasing order.
    """
    sample = tuple(x.shape[1:])
    if mask is not None and superpixel is not None:
        raise BadOption("feature_mask and superpixel are both set", "pass one of them")
    if superpixel is not None:
        k = positive_int("superpixel", superpixel, "use a cell side in elements, e.g. 8")
        if len(sample) < 2:
            raise BadOption(f"superpixel needs samples with two spatial axes, got samples of shape {sample}",
                            "pass a feature_mask, or neither to make every element a feature")
        h, w = sample[-2:]
        cells = (torch.arange(h) // k)[:, None] * (-(-w // k)) + (torch.arange(w) // k)[None, :]
        return cells.expand(sample).to(x.device)
    if mask is None:
        return torch.arange(int(np.prod(sample)), device=x.device).view(sample)
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if not np.issubdtype(m.dtype, np.integer):
        raise BadOption(f"feature_mask has dtype {m.dtype}", "pass integer feature ids, one per input element")
    if m.ndim == len(sample) + 1 and m.shape[0] == 1:  # one sample with its batch axis
        m = m[0]
    if m.ndim > len(sample) or any(a not in (1, b) for a, b in zip(m.shape[::-1], sample[::-1])):
        raise BadOption(f"feature_mask has shape {m.shape} for inputs of shape {tuple(x.shape)}",
                        f"pass one id per element of a sample, shape {sample}, or a shape that broadcasts to it")
    _, ids = np.unique(m, return_inverse=True)
    return torch.as_tensor(ids.reshape(m.shape), dtype=torch.long, device=x.device).expand(sample)


def masked_inputs(x: torch.Tensor, baseline: torch.Tensor | None, ids: torch.Tensor | None, coalitions: torch.Tensor,
                  rows: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Inputs for every (sample, coalition): `x` where the feature is on, else `baseline`.

    `coalitions` is a boolean (M, d) matrix; row `i * M + m` of the result is sample i
    under coalition m. `rows` selects some of those rows (a chunk) instead of all N * M.
    `ids=None`: feature j is element j of the flattened sample (a coalition is its own mask).
    `baseline=None`: zeros, made by x times the mask, less than half the cost of choosing with
    `where`; plus 0, so that an element switched off where x < 0 is +0 as the baseline's, not -0
    (a model reading the sign of zero, through atan2 or 1 / x, would tell them apart).
    `out`: where to write every row (N * M, ...) when they are part of a larger batch (rows=None only).
    """
    m = len(coalitions)
    keep = coalitions.view(m, *x.shape[1:]) if ids is None else coalitions[:, ids]  # (M, *sample shape)
    if rows is None:  # every row: one mask broadcast over the samples, 4x cheaper than gathering rows
        into = None if out is None else out.view(len(x), m, *x.shape[1:])
        if baseline is None:
            return torch.mul(x[:, None], keep[None], out=into).add_(0).flatten(0, 1)
        return torch.where(keep[None], x[:, None], baseline[:, None], out=into).flatten(0, 1)
    if out is not None:
        raise ValueError("masked_inputs writes into out= only every row (rows=None)")
    sample, coalition = rows // m, rows % m
    if baseline is None:
        return (x[sample] * keep[coalition]).add_(0)
    return torch.where(keep[coalition], x[sample], baseline[sample])


def off_values(x: torch.Tensor, baseline, background, seed: int) -> tuple[torch.Tensor, bool]:
    """What a switched-off feature takes: the baseline (N, ...), or background rows (B, ...) that
    scores are averaged over (then True)."""
    if background is None:
        return make_baseline(x, baseline, seed), False
    if not (isinstance(baseline, str) and baseline == "zeros"):
        raise BadOption("baseline and background are both set", "pass one: background rows replace the baseline")
    return background_rows(x, background), True


def background_rows(x: torch.Tensor, background) -> torch.Tensor:
    """The background as (B, *sample shape) on x's device and in x's dtype, checked."""
    if isinstance(background, torch.Tensor):
        background = background.detach().cpu().numpy()
    rows = np.asarray(background)
    if rows.dtype == bool or not np.issubdtype(rows.dtype, np.number):
        raise BadOption(f"background has dtype {rows.dtype}", "pass numeric rows (N_background, ...) or a DataFrame")
    if rows.ndim != x.dim() or rows.shape[1:] != tuple(x.shape[1:]) or len(rows) == 0:
        raise BadOption(f"background has shape {rows.shape} for inputs of shape {tuple(x.shape)}",
                        f"pass one or more rows of the input's sample shape, (B, {', '.join(map(str, x.shape[1:]))})")
    if not np.isfinite(rows).all():
        raise BadOption("background has NaN or inf", "pass finite values")
    return torch.as_tensor(rows, dtype=x.dtype, device=x.device)


@dataclass
class Game:
    """A batch as a cooperative game: each sample's target score as a function of a coalition."""

    model: object
    x: torch.Tensor
    baseline: torch.Tensor  # (N, ...), or the background (B, ...) when `averaged`
    ids: torch.Tensor
    d: int
    target: torch.Tensor
    full: torch.Tensor  # f(x) for the target, (N,) float64
    empty: torch.Tensor  # f(baseline), (N,) float64
    batch_size: int | None  # model inputs per pass; None: all at once
    averaged: bool = False  # `baseline` holds background rows, and every score is averaged over them
    resolution: torch.Tensor | None = None  # (N,) the end scores' rounding: 4 ulps of the larger, in the model's dtype
    elementwise: bool = False  # ids are 0, 1, 2, ... over the flattened sample: no gather to build a mask
    # (coalitions (M, d), scores (N, M)) scored in the end scores' pass; ScoredCoalitions.of_every_sample
    # hands the scores out for that very coalitions tensor (by identity)
    prescored: tuple | None = None
    zero_baseline: bool = False  # every off value is 0 (no background): masks multiply x instead of choosing

    def tolerance_gap(self, tol: float | None) -> torch.Tensor:
        """What a `tol` is relative to: |f(x) - f(baseline)| a sample, never below resolution / tol,
        so that tol never asks for a standard error finer than the scores' own rounding. Where x is
        its own baseline (a blank image, an all-zero row) the gap is 0, the standard errors are
        rounding noise, and a tolerance relative to 0 could never be met."""
        gap = (self.full - self.empty).abs()
        if self.resolution is None:
            return gap
        return torch.maximum(gap, self.resolution / (1.0 if tol is None else tol))

    def scores(self, coalitions: torch.Tensor) -> torch.Tensor:
        """Target scores of every sample under every coalition, (N, M) float64, `batch_size` inputs a pass."""
        with torch.inference_mode(False):  # the model's inputs and forward: see the module's docstring
            return self._scores(coalitions)

    def _scores(self, coalitions: torch.Tensor) -> torch.Tensor:
        n, m = len(self.x), len(coalitions)
        fills = len(self.baseline) if self.averaged else 1  # one model input per background row
        coalitions = coalitions.to(self.x.device)
        step = chunk_size(self.batch_size, n * m * fills)
        if not self.averaged and 0 < n * m <= step:  # one pass: no row arithmetic (none when no coalition)
            scores = class_scores(self.model, masked_inputs(self.x, self._off, self._mask_ids, coalitions))
            return picked_scores(scores, self.target.repeat_interleave(m)).double().view(n, m)
        out = torch.empty(n * m * fills, dtype=torch.float64, device=self.x.device)
        for start in range(0, n * m * fills, step):
            rows = torch.arange(start, min(start + step, n * m * fills), device=self.x.device)
            scores = class_scores(self.model, self._inputs(coalitions, rows, fills))
            out[start : start + len(rows)] = picked_scores(scores, self.target[rows // (m * fills)]).double()
        return out.view(n, m, fills).mean(2)

    def _inputs(self, coalitions: torch.Tensor, rows: torch.Tensor, fills: int) -> torch.Tensor:
        if not self.averaged:
            return masked_inputs(self.x, self._off, self._mask_ids, coalitions, rows)
        pair, fill = rows // fills, rows % fills  # row r: background row r % B of (sample, coalition) r // B
        m = len(coalitions)
        keep = coalitions[pair % m][:, self.ids]
        return torch.where(keep, self.x[pair // m], self.baseline[fill])

    @property
    def _off(self) -> torch.Tensor | None:
        """The baseline for `masked_inputs`: None where it is all zeros (then a product makes the masks)."""
        return None if self.zero_baseline else self.baseline

    @property
    def _mask_ids(self) -> torch.Tensor | None:
        """`ids`, or None where each feature is one element in order (a coalition is its own mask)."""
        return None if self.elementwise else self.ids

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """Per-feature values (N, d) as a float32 map of the input's shape."""
        out = values.to(self.x.device, torch.float32)
        if not self.elementwise:
            return out[:, self.ids]
        # feature j is element j: a reshape, not a gather; C-ordered (a solve's transpose is not), and
        # never a view of `values`
        out = out.reshape(len(out), *self.ids.shape).contiguous()
        return out.clone() if out.data_ptr() == values.data_ptr() else out


def game(model, x, targets, *, mask=None, superpixel=None, baseline="zeros", background=None, seed: int = 0,
         batch_size=1024, first=None) -> Game:
    """Features, baseline (or background rows), targets and the two end scores: one forward pass
    on x and the baseline or background. With a background, the empty coalition's score is the
    mean score of the background rows: shap's `base_values`.

    `first(d)`: coalitions (M, d) to score in that same pass, or None; scored there (the game's
    `prescored`) when all fit one pass and there is no background: a small model's forward costs
    as much for 8 rows as for 1000."""
    generator(seed)  # checked before any model evaluation
    ids = feature_mask(x, mask, superpixel)
    base, averaged = off_values(x, baseline, background, seed)
    d, n = int(ids.max()) + 1, len(x)
    elementwise = torch.equal(ids.reshape(-1), torch.arange(ids.numel(), device=ids.device))
    # the product's masks are +0 where switched off: a baseline of -0 keeps `where`
    zero_baseline = not averaged and not bool(base.any()) and not bool(torch.signbit(base).any())
    riding = riding_coalitions(None if first is None else first(d), n, len(base), averaged, batch_size)
    with torch.inference_mode(False):  # the model's inputs and forward: see the module's docstring
        # x, the off rows and any riding coalitions' inputs as one batch, the inputs written in place (a
        # cat would copy the largest block again); x detached: no score here is differentiated, and an
        # out= write refuses a tensor that takes gradients
        inputs = x.new_empty(n + len(base) + (0 if riding is None else n * len(riding)), *x.shape[1:])
        inputs[:n], inputs[n : n + len(base)] = x.detach(), base
        if riding is not None:  # moved to x's device, not replaced: `prescored` keeps the caller's tensor
            masked_inputs(x.detach(), None if zero_baseline else base, None if elementwise else ids, riding.to(x.device),
                          out=inputs[n + len(base) :])
        scores = class_scores(model, inputs, chunk_size(batch_size, len(inputs)))
    target, full, empty = end_scores(scores[: n + len(base)], n, targets, averaged)
    resolution = 4 * torch.finfo(scores.dtype).eps * torch.maximum(full.abs(), empty.abs())
    prescored = None
    if riding is not None:
        m = len(riding)
        prescored = riding, picked_scores(scores[2 * n :], target.repeat_interleave(m)).double().view(n, m)
    return Game(model, x, base, ids, d, target, full, empty, batch_size, averaged, resolution, elementwise, prescored,
                zero_baseline)


def riding_coalitions(coalitions, n: int, off_rows: int, averaged: bool, batch_size):
    """`coalitions` if they can ride in the end scores' pass (x and `off_rows` baseline rows): no
    background, and everything fits one pass; else None, and Game.scores scores them later."""
    if coalitions is None or averaged:
        return None
    total = n + off_rows + n * len(coalitions)
    return coalitions if chunk_size(batch_size, total) >= total else None


def end_scores(ends: torch.Tensor, n: int, targets, averaged: bool):
    """The targets, f(x) and f(baseline) (float64, one a sample) from the class scores of x's n rows
    and the baseline's (or the background's, averaged) after them."""
    target = targets.pick(ends[:n])
    full = picked_scores(ends[:n], target).double()
    if not averaged:
        return target, full, picked_scores(ends[n:], target).double()
    return target, full, ends[n:].double().mean(0)[target]
