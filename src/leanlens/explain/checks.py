"""Validation at the public edge of `explain()`: everything a user can get wrong."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from leanlens.errors import BadInput, BadOption, MissingCapability, closest

_NEED_HINTS = {
    "gradients": "use a black-box method such as 'occlusion', or pass a PyTorch model",
    "layers": "use a gradient method such as 'ig', or a model with a spatial layer",
}


def require(model, needs: frozenset[str], method: str) -> None:
    missing = sorted(needs - model.capabilities)
    if missing:
        raise MissingCapability(
            f"method {method!r} needs {' and '.join(missing)}, which a {model.framework} model "
            f"without them cannot give",
            _NEED_HINTS.get(missing[0], "see ll.methods()"),
        )


def as_batch(x, model) -> np.ndarray:
    """A float32 NumPy batch with the rank the model expects and finite values."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise BadInput(f"x has dtype {x.dtype}, not numbers", "pass a numeric array")
    x = x.astype(np.float32, copy=False)
    rank = getattr(model, "input_rank", None)
    if rank is not None and x.ndim != rank:
        hint = "add a batch axis: x[None]" if x.ndim == rank - 1 else f"pass a batch of shape (N, ...) with {rank} axes"
        raise BadInput(f"x has {x.ndim} axes {tuple(x.shape)} but the model takes {rank}", hint)
    if x.ndim < 2 or len(x) == 0:
        raise BadInput(f"x has shape {tuple(x.shape)}; expected a non-empty batch (N, ...)", "add a batch axis: x[None]")
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
        return _to_device(torch.as_tensor(as_batch(x, model)), model)
    if x.is_complex():
        raise BadInput(f"x has dtype {x.dtype}, not real numbers", "pass a real-valued tensor")
    as_batch(np.empty(x.shape[:1] + (1,) * (x.dim() - 1), dtype=np.float32), model)  # rank and emptiness
    bad = ~torch.isfinite(x.detach().reshape(len(x), -1)).all(dim=1)
    if bad.any():
        raise BadInput(f"x has NaN or inf in sample {int(bad.int().argmax())}", "clean or impute the input first")
    return _to_device(x.detach(), model)


def _to_device(x: torch.Tensor, model) -> torch.Tensor:
    """On the model's device, in its parameters' float type (float32 unless it was cast)."""
    return x.to(device=getattr(model, "device", x.device), dtype=getattr(model, "dtype", torch.float32))


def bind_options(fn: Callable, options: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The method's keyword options, defaults filled in; unknown names refused."""
    params = {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    for name in options:
        if name not in params:
            raise BadOption(f"method {method!r} has no option {name!r}", closest(name, params) if params else "it takes no options")
    return {**params, **options}
