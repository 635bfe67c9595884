"""The differentiable twin of an int8 ONNX model.

ONNX Runtime computes no gradients, yet an int8 model must still be explained. The twin
is the batch-norm-folded torch model whose conv and linear layers use the int8 model's
own integer weights (dequantized), round their inputs with the int8 model's activation
scales, and round their outputs where the int8 model stores them in uint8 (a conv before
a residual addition, the class scores). Rounding of a residual sum that feeds only a
pooling layer is not simulated, nor are the integer kernels' internal roundings, so its
scores agree with ONNX Runtime's closely, not exactly (tests/test_compress.py bounds the
difference). A dynamically quantized graph rounds each linear layer's input to that tensor's own
range at run time; its twin does the same.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import fx, nn

from leanlens.compression.int4 import dequantize_nbits
from leanlens.errors import BadInput

Rounding = tuple[float, int]  # (scale, zero point) of a uint8 activation


class QuantizedInput(nn.Module):
    """A layer whose input, and output where the int8 model stores it, are rounded to uint8.

    Inputs use torch's fake quantization (gradients stop outside the calibrated range, as
    the deployed model's values do). Outputs pass gradients straight through: a class score
    beyond the calibrated range must still have a gradient to explain. With no `scale`, the
    input is rounded as dynamic quantization does it: to the range of the tensor at hand.
    """

    def __init__(self, layer: nn.Module, scale: float | None, zero_point: int | None,
                 output: Rounding | None = None):
        super().__init__()
        self.layer = layer
        self.scale = None if scale is None else float(scale)
        self.zero_point = None if zero_point is None else int(zero_point)
        self.output = None if output is None else (float(output[0]), int(output[1]))

    def forward(self, x):
        if self.scale is None:
            y = self.layer(_round_to_own_range(x))
        else:
            y = self.layer(torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255))
        if self.output is None:
            return y
        rounded = torch.fake_quantize_per_tensor_affine(y, self.output[0], self.output[1], 0, 255)
        return y + (rounded - y).detach()


def _round_to_own_range(x: torch.Tensor) -> torch.Tensor:
    """ONNX Runtime's DynamicQuantizeLinear: uint8 over [min(x, 0), max(x, 0)] of the whole tensor.
    The range is read, not differentiated: gradients pass as through a fixed rounding."""
    low, high = x.detach().min().clamp(max=0), x.detach().max().clamp(min=0)
    scale = ((high - low) / 255).float()
    if scale == 0:
        return x
    zero = torch.round(-low / scale).clamp(0, 255).int()
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class GraphLayer(NamedTuple):
    """A conv or linear layer of the quantized graph, as the twin needs it."""

    weight: np.ndarray  # as the graph computes with it (dequantized int8 or int4, or float)
    node: str  # the graph node's name, which ORT's `nodes_to_exclude` takes
    inputs: str  # how the layer's input is rounded: "static" (input_rounding), "dynamic", "float"
    input_rounding: Rounding | None = None
    output_rounding: Rounding | None = None
    quantized: bool = True  # False: the graph computes this layer in float
    # how far, relative to the largest weight, rounding may move a weight: half a step of 255
    # levels is well under 1 %; ORT's symmetric 4-bit blocks divide a block's largest |w| by 8
    # into levels -8..7, so the largest positive weight is clipped by one step, 1/8 of it
    tolerance: float = 0.01


def int8_twin(folded: fx.GraphModule, int8_onnx: bytes) -> tuple[fx.GraphModule, dict[str, GraphLayer]]:
    """A copy of `folded` computing with the low-bit weights and activation scales of `int8_onnx`,
    and which graph layer each of its conv and linear layers stands for (by torch name).

    A layer the graph computes in float (left out of quantization, or a conv under dynamic
    quantization) stays float in the twin; any other layer must be found in the graph.
    """
    pool = graph_layers(onnx.load_from_string(int8_onnx))
    twin = copy.deepcopy(folded).eval()
    layers = {}
    for name, layer in list(twin.named_modules()):
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        index = _match(layer.weight.detach().cpu().numpy(), pool)
        if index is None:
            raise BadInput(f"layer {name!r} has no counterpart in the quantized model", "report this model as a bug")
        # each graph layer stands for one torch layer: a matched one leaves the pool, so two torch
        # layers with near-equal weights cannot both take the same graph layer's scales
        found = layers[name] = pool.pop(index)
        if found.quantized:
            with torch.no_grad():
                layer.weight.copy_(torch.as_tensor(found.weight))
        if found.inputs != "float":
            scale, zero = found.input_rounding or (None, None)
            twin.set_submodule(name, QuantizedInput(layer, scale, zero, found.output_rounding))
    twin.recompile()
    return twin, layers


def graph_layers(model: onnx.ModelProto) -> list[GraphLayer]:
    """Every conv and linear layer of the graph with what the twin copies from it."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers = []
    for node in model.graph.node:
        if node.op_type == "MatMulInteger":
            layers.append(GraphLayer(_dynamic_weight(node, producer, consumers, constants), node.name, "dynamic"))
        elif node.op_type == "MatMulNBits":  # 4-bit weights, float activations
            layers.append(GraphLayer(dequantize_nbits(node, constants), node.name, "float", tolerance=0.13))
        elif node.op_type in ("Conv", "Gemm", "MatMul"):
            layers.append(_static_layer(node, producer, consumers, constants))
    return [layer for layer in layers if layer is not None]


def _static_layer(node, producer, consumers, constants) -> GraphLayer | None:
    # torch stores (out, in); MatMul holds (in, out), and so does a Gemm not told transB=1
    transposed = node.op_type == "MatMul" or (
        node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute))
    x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
    if w_dq is None and node.input[1] in constants:  # left in float: its weight is a plain constant
        weight = constants[node.input[1]].astype(np.float32)
        return GraphLayer(weight.T if transposed else weight, node.name, "float", quantized=False)
    if x_dq is None or w_dq is None or x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
        return None  # a layer this module does not understand: its torch layer will not match
    weight = _dequantize(w_dq, constants)
    return GraphLayer(weight.T if transposed else weight, node.name, "static", _rounding(x_dq, constants),
                      _output_rounding(node, consumers, constants))


def _dynamic_weight(node, producer, consumers, constants) -> np.ndarray:
    """The float weight (out, in) of a MatMulInteger: its int8 values less their zero points,
    times the weight scales, which the quantizer multiplies into the input's scale after the
    product (MatMulInteger → Cast → Mul by input scale × weight scale)."""
    values = constants[node.input[1]].astype(np.float32)
    zero = constants[node.input[3]].astype(np.float32) if len(node.input) > 3 else np.zeros(1, np.float32)
    cast = consumers[node.output[0]][0]
    rescale = consumers[cast.output[0]][0]
    scales = producer[next(name for name in rescale.input if name != cast.output[0])]
    weight_scale = next(constants[name] for name in scales.input if name in constants).astype(np.float32)
    return ((values - zero) * weight_scale).T


def _rounding(node, constants) -> Rounding:
    """The scale and zero point of a QuantizeLinear or DequantizeLinear node."""
    zero = int(constants[node.input[2]]) if len(node.input) > 2 else 0
    return float(constants[node.input[1]]), zero


def _output_rounding(node, consumers, constants) -> Rounding | None:
    """How the int8 model rounds this layer's output, when a QuantizeLinear alone reads it.

    The quantizer drops a ReLU after a conv into that rounding (zero point 0 clips at zero).
    """
    readers = consumers.get(node.output[0], [])
    if len(readers) == 1 and readers[0].op_type == "QuantizeLinear":
        return _rounding(readers[0], constants)
    return None


def _dequantize(node, constants) -> np.ndarray:
    values = constants[node.input[0]].astype(np.float32)
    scale = constants[node.input[1]].astype(np.float32)
    zero = constants[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros_like(scale)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    shape = [1] * values.ndim
    if scale.ndim:
        shape[axis] = -1
    return (values - zero.reshape(shape)) * scale.reshape(shape)


def _match(weight: np.ndarray, pool: list[GraphLayer]) -> int | None:
    """The index of the graph layer whose weight is (or rounds to) this float weight, if any."""
    best, best_error = None, np.inf
    for index, candidate in enumerate(pool):
        if candidate.weight.shape != weight.shape:
            continue
        error = np.abs(candidate.weight - weight).max() / (np.abs(weight).max() + 1e-12)
        if error <= candidate.tolerance and error < best_error:
            best, best_error = index, error
    return best


def float_layers(model) -> list[str]:
    """The conv and linear layers that a quantized model's graph computes in float, by their
    torch names (for a static int8 model: those `max_drop` sent back to float)."""
    from leanlens.compression.onnx_export import fold_batchnorm

    if model.fp32.twin is None:  # a text model: its graph's float MatMul nodes, by ONNX name
        from leanlens.compression.text_fallback import float_nodes

        return float_nodes(model.model_bytes)
    _, layers = int8_twin(fold_batchnorm(model.fp32.twin.module), model.model_bytes)
    return [name for name, layer in layers.items() if not layer.quantized]
