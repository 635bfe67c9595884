"""`wrap()`: turn whatever model the user has into a leanlens `Model`."""

from __future__ import annotations

import os

from leanlens.errors import BadInput
from leanlens.models.base import Model


def wrap(obj) -> Model:
    """Return a leanlens `Model` for a torch module, an `.onnx` path, or a `Model` (as is)."""
    from leanlens.models.onnx_model import OnnxModel
    from leanlens.models.torch_model import TorchModel

    if isinstance(obj, (TorchModel, OnnxModel)):
        return obj
    try:
        import torch

        if isinstance(obj, torch.nn.Module):
            return TorchModel(obj)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    if isinstance(obj, (str, os.PathLike)) and str(obj).endswith(".onnx"):
        return OnnxModel(obj)
    if isinstance(obj, Model):
        return obj
    raise BadInput(
        f"cannot use a {type(obj).__name__} as a model",
        "pass a torch.nn.Module, a path to an .onnx file, or a leanlens Model",
    )
