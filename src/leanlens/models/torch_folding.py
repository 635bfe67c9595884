"""A batch-norm-folded copy of a module, for the passes that only need input gradients.

In eval mode a BatchNorm is an affine map, so folding it into the convolution (or linear
layer) before it computes the same function up to float rounding, with one pass fewer a
layer in the forward and in the backward. Gradient methods use it with `fold_bn=True`
(IG ran 1.26× faster on the SmallResNet on CPU). It is not the default because rounding
can flip a ReLU whose input sits at 0, which moves a few attributions by ~1e-5: more than
the 1e-5 agreement with Captum the tests hold the default path to.

The copy is kept while the module's weights keep their values. The key is a checksum of
the values, not a version counter: an edit through `.data` (`conv.weight.data.mul_(2)`,
`bn.running_var.data = ...`) bypasses the counter but not the checksum.
"""

from __future__ import annotations

import itertools
import weakref

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module → (weights' checksum, folded copy)


def gradient_module(module: nn.Module) -> nn.Module:
    """`module` with its batch norms folded away, or `module` itself when there is nothing to fold
    or it cannot be traced. Call it in eval mode (inside `inference()`)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return module
    state = weights_checksum(module)
    cached = _FOLDED.get(module)
    if cached is None or cached[0] != state:
        cached = _FOLDED[module] = (state, _fold(module))
    return cached[1] if cached[1] is not None else module


def _fold(module: nn.Module) -> nn.Module | None:
    """A folded deep copy with frozen weights, or None when fx cannot trace the module.

    None (not the module itself) is what the cache keeps for such a model: a value that
    referred to its key would keep the module alive forever in a weak dictionary.
    """
    try:
        folded = fuse(module)  # a deep copy: the user's module is left as it is
    except Exception:  # noqa: BLE001 - fx tracing fails many ways on data-dependent control flow
        return None  # such a model is explained as it is, only without the speed-up
    for parameter in folded.parameters():
        parameter.requires_grad_(False)  # input gradients only, never weight gradients
    return folded


def weights_checksum(module: nn.Module) -> tuple:
    """Shapes and two float64 sums of every parameter and buffer: the plain sum, and one weighted
    by position, so that scaling, replacing or moving values all change it. One device sync."""
    tensors = [t.detach() for t in itertools.chain(module.parameters(), module.buffers())]
    if not tensors:
        return ()
    sums = []
    for t in tensors:
        flat = t.flatten().double()
        position = torch.arange(1, len(flat) + 1, dtype=torch.float64, device=flat.device)
        sums += [flat.sum(), flat @ position]
    return tuple(tuple(t.shape) for t in tensors) + tuple(torch.stack(sums).cpu().tolist())
