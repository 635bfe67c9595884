"""The differentiable twin of an int8 ONNX model.

ONNX Runtime computes no gradients, yet an int8 model must still be explained. The twin
is the batch-norm-folded torch model whose conv and linear layers use the int8 model's
own integer weights (dequantized) and quantize their inputs with the int8 model's own
activation scales (straight-through gradients). It reproduces the deployed model's
rounding of weights and layer inputs; requantization inside residual additions and
pooling is not simulated, so its scores agree with ONNX Runtime's closely, not bit for bit.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import fx, nn

from leanlens.errors import BadInput


class QuantizedInput(nn.Module):
    """A layer whose input is rounded to uint8 with a fixed scale and zero point first."""

    def __init__(self, layer: nn.Module, scale: float, zero_point: int):
        super().__init__()
        self.layer = layer
        self.scale, self.zero_point = float(scale), int(zero_point)

    def forward(self, x):
        return self.layer(torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255))


def int8_twin(folded: fx.GraphModule, int8_onnx: bytes) -> fx.GraphModule:
    """A copy of `folded` computing with the int8 weights and input scales of `int8_onnx`."""
    quantized = _quantized_layers(onnx.load_from_string(int8_onnx))
    twin = copy.deepcopy(folded).eval()
    for name, layer in list(twin.named_modules()):
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        weight, input_scale, input_zero = _match(name, layer.weight.detach().cpu().numpy(), quantized)
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(weight))
        twin.set_submodule(name, QuantizedInput(layer, input_scale, input_zero))
    twin.recompile()
    return twin


def _quantized_layers(model: onnx.ModelProto) -> list[tuple[np.ndarray, np.ndarray, float, int]]:
    """(float weight, dequantized int8 weight, input scale, input zero point) per Conv/Gemm."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    layers = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        if x_dq is None or w_dq is None or x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
            continue  # left in float by the quantizer
        weight = _dequantize(w_dq, constants)
        if node.op_type == "Gemm" and any(a.name == "transB" and a.i == 0 for a in node.attribute):
            weight = weight.T
        scale = float(constants[x_dq.input[1]])
        zero = int(constants[x_dq.input[2]]) if len(x_dq.input) > 2 else 0
        layers.append((weight, scale, zero))
    return layers


def _dequantize(node, constants) -> np.ndarray:
    values = constants[node.input[0]].astype(np.float32)
    scale = constants[node.input[1]].astype(np.float32)
    zero = constants[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros_like(scale)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    shape = [1] * values.ndim
    if scale.ndim:
        shape[axis] = -1
    return (values - zero.reshape(shape)) * scale.reshape(shape)


def _match(name: str, weight: np.ndarray, quantized) -> tuple[np.ndarray, float, int]:
    """The quantized layer whose int8 weight rounds to this float weight."""
    best, best_error = None, np.inf
    for candidate in quantized:
        q_weight = candidate[0]
        if q_weight.shape != weight.shape:
            continue
        error = np.abs(q_weight - weight).max() / (np.abs(weight).max() + 1e-12)
        if error < best_error:
            best, best_error = candidate, error
    # Rounding to 255 levels moves a weight by at most half a step: well under 1 % of its range.
    if best is None or best_error > 0.01:
        raise BadInput(f"layer {name!r} has no int8 counterpart in the quantized model", "report this model as a bug")
    return best
