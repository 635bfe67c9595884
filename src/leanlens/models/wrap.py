"""`wrap()`: turn whatever model the user has into a leanlens `Model`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from leanlens.errors import BadInput, BadOption
from leanlens.models.base import Model
from leanlens.models.outputs import OutputChoice


def wrap(obj, *, output: OutputChoice = None) -> Model:
    """Return a leanlens `Model` for a torch module, a Keras model, a fitted scikit-learn estimator,
    an `.onnx` or `.keras` path, a function or a `Model` (as is).

    Parameters
    ----------
    obj : a torch.nn.Module, a keras.Model, a fitted scikit-learn estimator or Pipeline, a path
        to an .onnx file or a .keras file (loaded with Keras' safe_mode), a leanlens Model, or a function `fn(x) -> scores (N, classes)`
        (explained as a black box; it receives DataFrames when they are explained).
    output : for a module returning more than a tensor, where its scores are: a key or
        attribute name, an index, or a function of the output. By default the tensor
        itself, a tuple's first tensor, or the "logits" entry or attribute.
    """
    from leanlens.models.callable_model import CallableModel
    from leanlens.models.keras_model import (
        KerasModel,
        is_keras_file,
        is_keras_model,
        load_keras_file,
    )
    from leanlens.models.onnx_model import OnnxModel
    from leanlens.models.sklearn_model import SklearnModel, is_estimator
    from leanlens.models.torch_model import TorchModel

    # Before torch: on Keras' torch backend a Keras model is a torch.nn.Module too.
    if is_keras_model(obj):
        _no_output_choice(obj, output)
        return KerasModel(obj)
    if isinstance(obj, torch.nn.Module):
        return TorchModel(obj, output=output)
    _no_output_choice(obj, output)
    if isinstance(obj, (str, os.PathLike)) and Path(obj).suffix.lower() == ".onnx":
        return OnnxModel(obj)
    if is_keras_file(obj):
        return load_keras_file(obj)
    if isinstance(obj, Model):
        return obj
    if is_estimator(obj):
        return SklearnModel(obj)
    if callable(obj) and not isinstance(obj, type):
        return CallableModel(obj)
    raise BadInput(
        f"cannot use a {type(obj).__name__} as a model",
        "pass a torch.nn.Module, a keras.Model, a fitted scikit-learn estimator, a path to an .onnx or .keras file, "
        "a function of a batch, or a leanlens Model",
    )


def _no_output_choice(obj, output) -> None:
    if output is not None:
        raise BadOption(f"output= applies to torch modules, not a {type(obj).__name__}",
                        "drop output=, or wrap the torch module itself")
