"""Chunk sizes from a memory budget: how many model inputs one pass may hold.

`batch_size=None` means "as many as the budget allows", never "everything at once"
(Captum's IG running out of memory on many steps is its most-reported problem). The
budget is `memory` ("2GB", "512MB" or a number of bytes), else half the device's free
memory. A model input's footprint is measured once, on a probe: the tensors autograd
saves for the backward pass of one and of two inputs (their difference is what one
more input adds; the weights, saved once, are what any pass costs), plus the
gradients the backward pass holds and the input's own copies. A black box (no torch
graph to look into) is charged a fixed multiple of its input. The probe's result depends on
the network's layout and the input's shape, not on weight values, so it is kept per network
(where the adapter states its layout) and measured again only when that layout changes (the
probe, two gradient passes, was a quarter of a small model's KernelSHAP call).
"""

from __future__ import annotations

import math
import numbers
import os
import re
import weakref

import torch

from leanlens.errors import BadOption
from leanlens.explain.options import positive_int
from leanlens.models.base import GRADIENTS

UNITS = {"": 1, "B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}
COPIES = 4  # the path point or masked input, its gradient, and the where/index temporaries
BLACK_BOX_FACTOR = 64  # a black box's own working memory per input, unknown: charged generously
MAX_CHUNK = 8192  # beyond this, bigger passes buy no speed on any device we measured
FREE_SHARE = 0.5  # of the device's free memory, when no `memory` is given
SLACK = 2  # peak RSS measured on CPU runs to about twice the tensors' bytes (BLAS packing, the allocator)


def memory_bytes(memory) -> int:
    """`memory` ("2GB", "512 MB", 1e9) as bytes, or BadOption naming the fix."""
    hint = "use a size such as '2GB' or '512MB', or a number of bytes"
    if isinstance(memory, numbers.Real) and not isinstance(memory, bool):
        value = float(memory)
    elif isinstance(memory, str) and (match := re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?B?)\s*", memory.upper())):
        try:
            value = float(match[1]) * UNITS[match[2] if match[2].endswith("B") or not match[2] else match[2] + "B"]
        except ValueError:
            raise BadOption(f"memory={memory!r}", hint) from None
    else:
        raise BadOption(f"memory={memory!r}", hint)
    if not math.isfinite(value) or value < 1:
        raise BadOption(f"memory={memory!r}", hint)
    return int(value)


def free_bytes(device: torch.device) -> int:
    """Free memory on the device: the CUDA allocator's view, or the system's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:  # read every call (memory comes and goes): raw bytes, a third of Path.read_text's time
        fd = os.open("/proc/meminfo", os.O_RDONLY)
        try:
            head = os.read(fd, 8192)  # the whole file (~1.5 KB); MemAvailable is its third line
        finally:
            os.close(fd)
    except OSError:  # not Linux: fall through to a modest default
        return 4 * 2**30
    at = head.find(b"MemAvailable:")
    if at < 0:
        return 4 * 2**30
    return int(head[at + len(b"MemAvailable:") :].split(None, 1)[0]) * 1024


def saved_bytes(model, probe: torch.Tensor, fold_bn: bool = False) -> tuple[int, int]:
    """Bytes of the tensors autograd saves for one gradient pass of `probe` (each storage once),
    and the largest of those with a row a probe input (an activation, not a weight), a row's bytes."""
    seen: dict[tuple[int, int], int] = {}
    largest = 0

    def pack(tensor):
        nonlocal largest
        storage = tensor.untyped_storage()
        seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        if tensor.dim() and tensor.shape[0] == len(probe):
            largest = max(largest, tensor.numel() * tensor.element_size() // len(probe))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.input_gradients(probe, lambda scores: scores.argmax(1), fold_bn=fold_bn)  # any class costs the same
    return sum(seen.values()), largest


def input_footprint(model, sample: torch.Tensor, fold_bn: bool = False) -> tuple[int, int]:
    """Bytes one more model input costs in a gradient pass (an upper bound for a forward one),
    and the bytes a pass costs whatever its size (the weights it saves).

    Besides what autograd saves, the backward pass holds the gradients of the largest
    activation on both sides of the layer being differentiated: twice the largest saved.
    """
    own = sample[0].numel() * sample.element_size() * COPIES
    if GRADIENTS not in model.capabilities:
        return own * BLACK_BOX_FACTOR // COPIES, 0
    (one, _), (two, largest) = (saved_bytes(model, sample[:1].expand((k,) + sample.shape[1:]).clone(), fold_bn)
                                for k in (1, 2))
    return SLACK * (max(two - one, 0) + 2 * largest) + own, max(2 * one - two, 0)


_FOOTPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # network -> {probe key: footprint}


def remembered_footprint(model, sample: torch.Tensor, fold_bn: bool = False) -> tuple[int, int]:
    """`input_footprint`, probed once per network layout, input shape and autocast type (where
    the adapter says its layout: `layout() -> (network, summary)`, e.g. a torch module's)."""
    layout = model.layout() if callable(getattr(model, "layout", None)) else None
    if layout is None:
        return input_footprint(model, sample, fold_bn)
    network, summary = layout
    device = sample.device.type
    autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None  # halves activations
    key = (summary, tuple(sample.shape[1:]), sample.dtype, sample.device, fold_bn, autocast)
    known = _FOOTPRINTS.setdefault(network, {})
    if key not in known:
        known[key] = input_footprint(model, sample, fold_bn)
    return known[key]


def budget_bytes(memory, device: torch.device) -> int:
    """The memory budget: `memory` as bytes, else a share of the device's free memory."""
    return memory_bytes(memory) if memory is not None else int(free_bytes(device) * FREE_SHARE)


def budget_chunk(batch_size, model, sample: torch.Tensor, memory=None, fold_bn: bool = False,
                 share: float = 1.0) -> int:
    """Model inputs per pass: an explicit `batch_size`, else as many as fit the memory budget
    (`share` of it, when the caller keeps something else in the rest).

    `sample` is one input like those the passes will see, through the network they will
    run (`fold_bn`: the BN-folded copy). A budget too small for one input is refused.
    """
    if batch_size is not None:
        return positive_int("batch_size", batch_size, "use a positive int (model inputs per pass) or None "
                            "(from the memory budget)")
    budget = int(budget_bytes(memory, sample.device) * share)
    each, fixed = remembered_footprint(model, sample, fold_bn)
    if budget < fixed + each:
        need = (fixed + each) / share
        size = f"{math.ceil(need / 2**20)}MB" if need >= 2**20 else f"{math.ceil(need / 2**10)}KB"
        passes = "" if share == 1 else f", with {share:.0%} of it for the passes,"
        raise BadOption(f"memory={memory!r}{passes} is less than one model input needs (about {size})",
                        f"give at least memory='{size}', or pass batch_size=1")
    return max(1, min((budget - fixed) // each, MAX_CHUNK))
