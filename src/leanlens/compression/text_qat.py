"""Quantization-aware training of a transformer text classifier (scheme "int8-qat" on a TextClassifier).

The CNN path (compression/qat.py) finds the rounded tensors in an fx trace, which a transformers
BERT does not allow. Here the rounding is put where static int8 rounds a text model's linear
layers: every nn.Linear (the encoder's query, key, value, output and feed-forward layers, and the
head) is wrapped so that its input is rounded to uint8 on a learned range and its weight to int8
per output channel, with fakequant's own observers, which use ORT's formulas. Each wrapped layer is
matched to its MatMul or Gemm in the exported graph by its weight, and its observer to that
node's activation input: query, key and value read one tensor, so they share one observer.

Not simulated: the rounding of the two attention products (Q·Kᵀ and softmax·V), whose operands
are activations computed inside transformers' attention code; their ranges are calibrated on the
trained float model, as PTQ's are. Dropout is off while training: the deployed graph has none.
The learned ranges go to ORT's static quantizer as TensorQuantOverrides, so the graph is PTQ's
graph, node for node, with what QAT learned.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper
from torch import nn

from leanlens.compression.fakequant import (
    ActivationRange,
    RoundedWeights,
    calibrate,
    learned_roundings,
    observers,
)
from leanlens.compression.qat import Training, _train
from leanlens.compression.text_fallback import PRODUCTS
from leanlens.compression.text_quantize import prepared_graph, text_to_onnx
from leanlens.data import Dataset
from leanlens.text.classifier import TextClassifier


class TextTrained(NamedTuple):
    """The trained float classifier, its graphs, and what training did."""

    module: TextClassifier
    fp32_onnx: bytes
    int8_onnx: bytes
    losses: list[float]  # training loss at each step
    start: dict[str, dict]  # the calibrated ranges training started from, as ORT overrides
    learned: dict[str, dict]  # the ranges it ended with: those of `int8_onnx`


class SharedRange(ActivationRange):
    """An observer read by several layers (query, key and value take one tensor): each tensor
    moves its range once, not once a reader, and is rounded once."""

    def forward(self, x):
        if getattr(self, "_seen", (None, None))[0] is not x:
            self._seen = (x, super().forward(x))
        return self._seen[1]


def train_text_int8(module: TextClassifier, training: Training, calibration: np.ndarray, batch_size: int,
                    quantize: Callable[[bytes, dict], bytes], seed: int = 0) -> TextTrained:
    """QAT of a copy of `module`, starting from min-max PTQ's ranges on `calibration`;
    `quantize(fp32_onnx, overrides)` is the static int8 quantizer that PTQ uses."""
    model = copy.deepcopy(module).eval()
    for dropout in (m for m in model.modules() if isinstance(m, nn.Dropout)):
        dropout.p = 0.0
    wrappers = _rounded_linears(model, prepared_graph(text_to_onnx(model, calibration[:1])))
    calibrate(model, calibration, batch_size)
    start = learned_roundings(model)
    for observer in observers(model):  # trainable from here, starting at PTQ's min-max ranges
        observer.learn_range()
    losses = _train(model, _without_padding_columns(training, model.pad_id), batch_size, seed)
    learned = learned_roundings(model)
    for name, wrapper in wrappers.items():
        model.set_submodule(name, wrapper[1].layer)  # the trained float layer, unwrapped
    fp32_onnx = text_to_onnx(model, calibration[:1])
    return TextTrained(model, fp32_onnx, quantize(fp32_onnx, learned), losses, start, learned)


def _rounded_linears(model: TextClassifier, prepared_onnx: bytes) -> dict[str, nn.Sequential]:
    """Wrap each nn.Linear of `model` in place as (observer of its input, rounded weights)."""
    inputs = linear_inputs(model, prepared_onnx)
    observers = {tensor: SharedRange(tensor) for tensor in dict.fromkeys(inputs.values())}
    wrappers = {}
    for name, tensor in inputs.items():
        wrappers[name] = nn.Sequential(observers[tensor], RoundedWeights(model.get_submodule(name)))
        model.set_submodule(name, wrappers[name])
    return wrappers


def linear_inputs(module: nn.Module, graph_onnx: bytes) -> dict[str, str]:
    """Each nn.Linear of `module` → the activation tensor its MatMul/Gemm reads in the graph,
    matched by weight (exported as Wᵀ for a MatMul, as W for a Gemm with transB)."""
    graph = onnx.load_from_string(graph_onnx).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    by_weight = {}
    for node in graph.node:
        if node.op_type in PRODUCTS and len(node.input) > 1 and node.input[1] in constants:
            weight = constants[node.input[1]]
            transposed = node.op_type == "MatMul" or not _attribute(node, "transB", 0)
            by_weight[(weight.T if transposed else weight).tobytes()] = node.input[0]
    found = {}
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Linear):
            key = layer.weight.detach().numpy().astype(np.float32).tobytes()
            if key in by_weight:
                found[name] = by_weight[key]
    return found


def _attribute(node: onnx.NodeProto, name: str, default):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _without_padding_columns(training: Training, pad_id: int) -> Training:
    """The training data cut after the last column any row uses: masked padding changes no score,
    and short texts padded to a fixed length would otherwise cost the encoder several times as much."""
    data = training.data
    used = np.flatnonzero((data.x != pad_id).any(0))
    width = int(used.max()) + 1 if len(used) else data.x.shape[1]
    return training._replace(data=Dataset(data.x[:, :width], data.y, name=data.name, classes=data.classes))
