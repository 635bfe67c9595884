"""Validation at the public edge of `explain()`: everything a user can get wrong."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from leanlens.errors import BadInput, BadOption, MissingCapability, closest
from leanlens.explain.registry import methods
from leanlens.models.base import GRADIENTS

_NEED_HINTS = {
    "gradients": "use a black-box method ({forward}), or pass a PyTorch or Keras model",
    "layers": "use a gradient method such as 'ig', or a model with a spatial layer",
}


def require(model, needs: frozenset[str], method: str) -> None:
    missing = sorted(needs - model.capabilities)
    if missing:
        forward = ", ".join(repr(name) for name, spec in methods().items() if not spec.needs)
        raise MissingCapability(
            f"method {method!r} needs {' and '.join(missing)}, which a {model.framework} model "
            f"without them cannot give",
            _NEED_HINTS.get(missing[0], "see ll.methods()").format(forward=forward),
        )


def as_batch(x, model) -> np.ndarray:
    """A real NumPy batch (N, ...) of finite values: float64 stays float64, anything else
    becomes float32. Whether its shape fits the model, the model's first forward tells."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise BadInput(f"x has dtype {x.dtype}, not real numbers", "pass the real part (x.real) or its magnitude (abs(x))")
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise BadInput(f"x has dtype {x.dtype}, not numbers", "pass a numeric array")
    # A float64 model must see float64 inputs: a Unix time in float32 is off by up to a minute.
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=False)
    _check_batch_shape(tuple(x.shape))
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise BadInput(f"x has NaN or inf in sample {int(np.argmax(bad))}", "clean or impute the input first")
    return x


def as_checked_tensor(x, model) -> torch.Tensor:
    """`x` as a tensor on the model's device and in its float type, checked like `as_batch`.

    A tensor stays a tensor (no round trip through NumPy), so `attribute()` can be
    called inside a training loop on GPU data.
    """
    if not isinstance(x, torch.Tensor):
        return as_tensor(model, as_batch(x, model))
    if x.is_complex():
        raise BadInput(f"x has dtype {x.dtype}, not real numbers", "pass the real part (x.real) or its magnitude (x.abs())")
    _check_batch_shape(tuple(x.shape))
    bad = ~torch.isfinite(x.detach().reshape(len(x), -1)).all(dim=1)
    if bad.any():
        raise BadInput(f"x has NaN or inf in sample {int(bad.int().argmax())}", "clean or impute the input first")
    return as_tensor(model, x.detach())


def _check_batch_shape(shape: tuple[int, ...]) -> None:
    if len(shape) < 2 or shape[0] == 0:
        raise BadInput(f"x has shape {shape}; expected a non-empty batch (N, ...)", "add a batch axis: x[None]")


def as_tensor(model, x) -> torch.Tensor:
    """A batch as the tensor methods work on: the model's device and float type where it has
    them (a differentiable model); otherwise the batch's own float type, on the CPU."""
    if GRADIENTS in model.capabilities:
        return model.to_tensor(x)
    return torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x


@functools.lru_cache(maxsize=256)  # a method's signature never changes; reading it was 30 us a call
def keyword_defaults(fn: Callable) -> dict[str, Any]:
    """Each keyword-only parameter of `fn` with its default (shared: copy before changing)."""
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def bind_options(fn: Callable, options: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The method's keyword options, defaults filled in; unknown names refused."""
    params = keyword_defaults(fn)
    for name in options:
        if name not in params:
            raise BadOption(f"method {method!r} has no option {name!r}", closest(name, params) if params else "it takes no options")
    return {**params, **options}
