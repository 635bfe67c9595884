"""The Keras 3 adapter: a `keras.Model` seen as a leanlens `DifferentiableModel`.

Gradients come from the backend Keras was started with: torch autograd on Keras' torch
backend (the model's tensors are torch tensors there, so nothing is copied), a
`tf.GradientTape` on TensorFlow (tensors cross to and from NumPy at this boundary).
Grad-CAM on a named layer runs a sub-model from the model's inputs to that layer's output
and the model's output. Keras lays images out channels-last (N, H, W, C) by default: layer
maps are handed to leanlens as (N, C, H, W), and `channels_last` tells CAM methods where
the input's spatial axes are.

keras is never imported here unless the user already has (`is_keras_model` reads sys.modules)
or asks for a `.keras` file, which is loaded with Keras' `safe_mode=True`: a file whose layers
hold Python code (a `Lambda` of a lambda) is refused, never run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from leanlens.errors import BadInput, MissingCapability, UnsafeFile, closest
from leanlens.models.architecture import first_line
from leanlens.models.base import BLACK_BOX, GRADIENTS, LAYERS, Pick
from leanlens.models.torch_grad import picked_sum


def is_keras_model(obj) -> bool:
    """Whether `obj` is a Keras 3 model (without importing keras)."""
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def is_keras_file(obj) -> bool:
    """Whether `obj` is a path ending in `.keras` (Keras 3's saving format)."""
    return isinstance(obj, (str, os.PathLike)) and Path(obj).suffix.lower() == ".keras"


def load_keras_file(path: str | os.PathLike) -> KerasModel:
    """The model in a `.keras` file, loaded with `safe_mode=True` and without its training setup."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no model file at {str(path)!r}", "check the path")
    if not zipfile.is_zipfile(path):  # Keras would call a damaged archive "file not found"
        raise BadInput(f"{path.name} is not a readable .keras file (not a zip archive)", "save the model again with model.save")
    keras = _import_keras(path.name)
    try:
        network = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras rebuilds layers of any kind, each with its own errors
        if "safe_mode" in str(error):
            raise UnsafeFile(f"{path.name} holds Python code (a Lambda layer or similar) that loading would run",
                             "rebuild the model without Lambda layers, or load it yourself with "
                             "safe_mode=False if you trust who made it, and pass the model") from None
        raise BadInput(f"cannot rebuild the model in {path.name}: {first_line(error)}",
                       "save it again with model.save, with the Keras version that loads it") from None
    return KerasModel(network)


def _import_keras(name: str):
    try:
        import keras
    except ImportError as error:  # keras itself, or the backend it is set to start (tensorflow by default)
        raise MissingCapability(f"reading {name} needs Keras 3 and its backend, which cannot be imported "
                                f"({first_line(error)})", "pip install 'leanlens[tensorflow]', or install "
                                "keras and torch and set KERAS_BACKEND=torch") from None
    return keras


class KerasModel:
    """A Keras 3 model with leanlens' model interface, gradients through its backend."""

    framework = "keras"
    capabilities = frozenset({GRADIENTS, LAYERS, BLACK_BOX})
    stand_in = False

    def __init__(self, network):
        import keras

        self.network = network
        self.backend = keras.backend.backend()
        if self.backend not in BACKENDS:
            raise MissingCapability(f"leanlens cannot differentiate Keras' {self.backend!r} backend",
                                    "start Keras with KERAS_BACKEND=torch or tensorflow")
        self._engine = BACKENDS[self.backend]()
        # the layout of the model's own conv layers, else Keras' default (channels-last unless configured)
        formats = [layer.data_format for layer in network.layers if isinstance(getattr(layer, "data_format", None), str)]
        self.channels_last = (formats[0] if formats else keras.config.image_data_format()) == "channels_last"

    def __repr__(self) -> str:
        return f"KerasModel({self.network.name}, {self.network.count_params():,} params, {self.backend} backend)"

    @property
    def device(self) -> torch.device:
        return self._engine.device(self.network)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.network.compute_dtype == "float64" else torch.float32

    def to_tensor(self, x) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype, device=self.device)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class scores (N, classes), not labels: `predict(x).argmax(1)` gives the classes."""
        if len(x) == 0:
            raise BadInput("predict() got an empty batch", "pass at least one sample")
        chunks = [self.scores(self.to_tensor(x[start : start + batch_size])) for start in range(0, len(x), batch_size)]
        return torch.cat(chunks).float().cpu().numpy()

    def inference(self, freeze: bool = True):
        return contextlib.nullcontext()  # every call below passes training=False

    def scores(self, x: torch.Tensor, *, fold_bn: bool = False) -> torch.Tensor:
        return self._engine.scores(self.network, x)

    def input_gradients(self, x: torch.Tensor, pick: Pick, *, create_graph: bool = False,
                        fold_bn: bool = False) -> torch.Tensor:
        return self._engine.gradients(self.network, x, pick, None, create_graph)[1]

    def default_layer(self, x: torch.Tensor) -> str:
        spatial = [layer.name for layer in self.network.layers if _is_spatial(layer)]
        if not spatial:
            raise MissingCapability("the model has no spatial layer for a CAM method", "use a gradient method such as 'ig'")
        return spatial[-1]

    def layer_gradients(self, x: torch.Tensor, pick: Pick, layer: str, *, create_graph: bool = False,
                        fold_bn: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's activations and the picked scores' gradients there, both (N, C, H, W)."""
        import keras

        names = [each.name for each in self.network.layers]
        if layer not in names:
            raise BadInput(f"the model has no layer named {layer!r}", closest(layer, names))
        if not _is_spatial(self.network.get_layer(layer)):
            raise MissingCapability(f"layer {layer!r} does not output a spatial map", "pick a convolutional layer")
        sub = keras.Model(self.network.inputs, [self.network.get_layer(layer).output, self.network.output])
        act, grads = self._engine.gradients(sub, x, pick, "layer", create_graph)
        if self.channels_last:
            act, grads = act.permute(0, 3, 1, 2), grads.permute(0, 3, 1, 2)
        return act, grads


def _is_spatial(layer) -> bool:
    """Whether the layer outputs a 4-D map (N, H, W, C) or (N, C, H, W)."""
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):  # a layer never called on a symbolic input has no output
        return False


class _TorchEngine:
    """Keras on its torch backend: the model's tensors are torch tensors, autograd differentiates."""

    @staticmethod
    def device(network) -> torch.device:
        first = next(iter(network.weights), None)
        return first.value.device if first is not None else torch.device("cpu")

    @staticmethod
    def scores(network, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _single(network(x, training=False))

    @staticmethod
    def gradients(network, x, pick, wrt_layer, create_graph):
        """(activations or None, gradients): of the input, or with `wrt_layer` of the sub-model's first output."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = network(x, training=False)
            act, scores = (out[0], out[1]) if wrt_layer else (None, _single(out))
            point = act if wrt_layer else x
            (grads,) = torch.autograd.grad(picked_sum(scores, pick(scores)), point, create_graph=create_graph)
        return (act if act is None or create_graph else act.detach()), grads


class _TensorFlowEngine:
    """Keras on TensorFlow: a GradientTape per call, tensors through NumPy at this boundary."""

    @staticmethod
    def device(network) -> torch.device:
        return torch.device("cpu")  # results come back through NumPy

    @staticmethod
    def scores(network, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.array(_single(network(x.detach().cpu().numpy(), training=False))))

    @staticmethod
    def gradients(network, x, pick, wrt_layer, create_graph):
        import tensorflow as tf

        if create_graph:
            raise MissingCapability("create_graph=True needs Keras' torch backend", "start Keras with KERAS_BACKEND=torch")
        inputs = tf.convert_to_tensor(x.detach().cpu().numpy())
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = network(inputs, training=False)
            act, scores = (out[0], out[1]) if wrt_layer else (None, _single(out))
            target = pick(torch.as_tensor(np.array(scores))).cpu().numpy()
            total = tf.reduce_sum(tf.gather(scores, target, axis=1, batch_dims=1))
        grads = tape.gradient(total, act if wrt_layer else inputs)
        as_torch = (lambda t: None if t is None else torch.as_tensor(np.array(t)))  # a copy: TF's arrays are read-only
        return as_torch(act), as_torch(grads)


def _single(output):
    """The scores of a model with one output; a list or dict of outputs is refused in one line."""
    if isinstance(output, (list, tuple, dict)):
        raise BadInput(f"the Keras model returns {len(output)} outputs", "explain a model with one output of class scores")
    return output


BACKENDS = {"torch": _TorchEngine, "tensorflow": _TensorFlowEngine}
