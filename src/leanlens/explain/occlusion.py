"""Occlusion (Zeiler & Fergus, 2014): how much the target score drops when a patch is hidden.

A window slides over each sample; every position is replaced by the baseline and
scored. A feature's attribution is the mean score drop over the windows that cover
it. Only forward passes are needed, so it works on any model, an ONNX graph included.
"""

from __future__ import annotations

import math
import numbers

import torch

from leanlens.errors import BadOption
from leanlens.explain.features import off_values
from leanlens.explain.options import chunk_size, positive_int
from leanlens.explain.registry import method
from leanlens.explain.targets import class_scores, picked_scores

SHAPE_HINT = ("an int (a square window over all channels for images, e.g. 8), "
              "or a tuple with one size for each axis of a sample")


def _sides(name: str, value, shape: tuple[int, ...], first: int | None) -> tuple[int, ...]:
    """`value` as one positive int for each axis of a sample.

    An int covers every axis after the first; the first axis (an image's channels)
    takes `first`, so window=8 on (3, 32, 32) is (3, 8, 8). Flat samples have one axis.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        sides = (value,) if len(shape) == 1 else (first,) + (value,) * (len(shape) - 1)
    elif isinstance(value, (tuple, list)):
        if len(value) != len(shape):
            raise BadOption(f"{name}={tuple(value)!r} has {len(value)} sizes for samples of shape {shape}",
                            f"use {SHAPE_HINT}")
        sides = tuple(value)
    else:
        raise BadOption(f"{name}={value!r}", f"use {SHAPE_HINT}")
    for side in sides:
        positive_int(name, side, f"every size must be a positive int; use {SHAPE_HINT}")
    return tuple(int(s) for s in sides)


def window_plan(shape: tuple[int, ...], window, stride) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The checked window and stride for samples of `shape` (defaults filled in)."""
    if window is None:  # flat features one at a time; images in patches of about an eighth of a side
        window = 1 if len(shape) == 1 else max(1, min(shape[1:]) // 8)
    window = _sides("window", window, shape, shape[0])
    too_big = [i for i, (w, s) in enumerate(zip(window, shape)) if w > s]
    if too_big:
        raise BadOption(f"window {window} is larger than the sample {shape} on axis {too_big[0]}",
                        "use a window no larger than the input")
    # On the first axis an int stride steps by the window itself: channels are not slid over.
    stride = window if stride is None else _sides("stride", stride, shape, window[0])
    # A stride longer than the window would leave features no window covers (no attribution).
    gaps = [i for i, (t, w, s) in enumerate(zip(stride, window, shape)) if t > w and w < s]
    if gaps:
        raise BadOption(f"stride {stride} is longer than window {window} on axis {gaps[0]}, leaving gaps",
                        "use a stride no longer than the window")
    return window, stride


def _axis_masks(side: int, window: int, stride: int, device) -> torch.Tensor:
    """(positions, side) bool: which elements of one axis each window position hides.

    Positions start every `stride` until the window reaches the end; the last one may
    run past the end and is cut there, so every element is covered (as in Captum).
    """
    positions = math.ceil((side - window) / stride) + 1
    starts = torch.arange(positions, device=device)[:, None] * stride
    index = torch.arange(side, device=device)[None, :]
    return (index >= starts) & (index < starts + window)


@method("occlusion", family="perturbation", needs=())
def occlusion(model, x, targets, *, window=None, stride=None, baseline="zeros", background=None,
              batch_size: int | None = 256, seed: int = 0):
    """Occlusion (Zeiler & Fergus, 2014): mean target-score drop over the windows hiding a feature.

    `window` and `stride` are an int (for images a square over all channels) or one size
    an axis of a sample. `window` defaults to 1 for flat inputs and an eighth of the
    smaller side for images; `stride` defaults to the window (tiles that do not overlap).
    Hidden features take `baseline` (a number, an array, or 'zeros', 'mean', 'blur',
    'uniform' seeded by `seed`), or, with `background` rows (B, ...), each row in turn, the
    drops averaged over them. Costs N × (B × windows + 1) forward passes, `batch_size` a pass.
    """
    shape = tuple(x.shape[1:])
    window, stride = window_plan(shape, window, stride)
    fills = _fills(x, baseline, background, seed)
    axes = [_axis_masks(s, w, t, x.device) for s, w, t in zip(shape, window, stride)]
    counts = [len(m) for m in axes]
    windows = math.prod(counts)
    step = chunk_size(batch_size, len(x) * windows)

    clean = class_scores(model, x, step)
    target = targets.pick(clean)
    clean_picked = picked_scores(clean, target)

    total = torch.zeros_like(x)
    for base in fills:
        total += _drops(model, x, base, axes, shape, target, clean_picked, step) / len(fills)

    # How many windows cover each element: the same for every sample, an outer product again.
    cover = torch.ones((), device=x.device)
    for axis_mask in axes:
        cover = cover[..., None] * axis_mask.sum(0).to(x.dtype)
    return total / cover, {}


def _fills(x, baseline, background, seed) -> list[torch.Tensor]:
    """What hidden elements take: the baseline, or each background row in turn (batch-shaped)."""
    base, averaged = off_values(x, baseline, background, seed)
    return [row.expand_as(x) for row in base] if averaged else [base]


def _drops(model, x, base, axes, shape, target, clean_picked, step) -> torch.Tensor:
    """Each element's summed target-score drop over the windows hiding it, hidden elements from `base`."""
    counts = [len(m) for m in axes]
    windows = math.prod(counts)
    total = torch.zeros_like(x)
    for begin in range(0, len(x) * windows, step):
        # Row r of the chunk is window r % windows of sample r // windows: masks for the
        # whole chunk come from an outer product of per-axis masks, no loop over windows.
        rows = torch.arange(begin, min(begin + step, len(x) * windows), device=x.device)
        sample, position = rows // windows, rows % windows
        mask = torch.ones((len(rows),) + (1,) * len(shape), dtype=torch.bool, device=x.device)
        for axis, axis_position in enumerate(torch.unravel_index(position, counts)):
            view = [len(rows)] + [1] * len(shape)
            view[axis + 1] = shape[axis]
            mask = mask & axes[axis][axis_position].view(view)
        hidden = torch.where(mask, base[sample], x[sample])
        drop = clean_picked[sample] - picked_scores(class_scores(model, hidden, step), target[sample])
        total.index_add_(0, sample, mask * drop.view((-1,) + (1,) * len(shape)).to(x.dtype))
    return total
