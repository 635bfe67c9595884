"""Fake quantization that rounds where, and as, ONNX Runtime's static int8 graph rounds.

Quantization-aware training needs a float model that computes what the deployed int8
graph will compute. Rather than guess where ORT puts its QuantizeLinear nodes (it folds
a ReLU into the conv before it, shares one scale across a Flatten...), the places are read
off a post-training QDQ graph of the same model: each rounded activation tensor is found
among the torch graph's nodes by its values on a sample batch, and gets a range observer
there. Weights of the layers the graph quantizes are rounded per output channel.

Both roundings use ORT's own formulas (`onnxruntime.quantization.quant_utils.compute_scale_zp`):
activations uint8 over [min(low, 0), max(high, 0)], scale = range / 255, zero point
round(−low / scale); weights int8 symmetric, scale = max |w| / 127 per channel, levels −127..127.
Not simulated: the int32 rounding of biases (a step of input scale × weight scale, far below
the output's own step) and the integer kernels' internal requantization.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import fx, nn

from leanlens.compression.twin import int8_twin


def uint8_rounding(low: float, high: float) -> tuple[float, int]:
    """ORT's scale (float32) and zero point of a uint8 tensor observed over [low, high]."""
    low, high = min(float(np.float32(low)), 0.0), max(float(np.float32(high)), 0.0)
    scale = (high - low) / 255  # in float64, as ORT computes it, then stored as float32
    if np.float32(scale) < np.finfo(np.float32).tiny:
        return 1.0, 0
    return float(np.float32(scale)), int(np.round(-low / scale))


class ActivationRange(nn.Module):
    """An observer of one activation tensor's range that rounds the tensor to uint8 on it.

    While `calibrating` it only records the extremes it sees, as ORT's min-max calibration
    does on the float model: PTQ's range. `learn_range()` then makes the rounding's scale and
    zero point trainable, starting from that range (LSQ+, Bhalgat et al., 2020): the loss
    decides where to clip. A moving min-max can only follow the extremes, so one outlier
    (a stuck pixel, a rare large activation) holds the range open for good; a learned range
    clips it when the model is better off with finer steps for everything else.
    """

    def __init__(self, tensor: str):
        super().__init__()
        self.tensor = tensor  # the ONNX tensor whose rounding this stands for
        self.calibrating = False
        self.register_buffer("low", torch.tensor(float("inf")))
        self.register_buffer("high", torch.tensor(float("-inf")))
        # the step in log space, so that one learning rate moves small and large ranges alike
        self.log_scale = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.zero_point = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.register_buffer("learning", torch.tensor(False))

    def learn_range(self) -> None:
        """Start the trainable rounding at the calibrated min-max range, exactly as ORT rounds it."""
        scale, zero_point = uint8_rounding(self.low, self.high)
        with torch.no_grad():
            self.log_scale.fill_(float(np.log(scale)))
            self.zero_point.fill_(float(zero_point))
        self.log_scale.requires_grad_(True)
        self.zero_point.requires_grad_(True)
        self.learning.fill_(True)

    def rounding(self) -> tuple[float, int]:
        """The (scale, zero point) this tensor is rounded with, as ORT will store them."""
        if not self.learning:
            return uint8_rounding(self.low, self.high)
        scale = float(np.float32(np.exp(float(self.log_scale.detach()))))
        return scale, int(np.clip(np.round(float(self.zero_point.detach())), 0, 255))

    def forward(self, x):
        if self.calibrating:
            self.low.copy_(torch.minimum(self.low, x.detach().min().float()))
            self.high.copy_(torch.maximum(self.high, x.detach().max().float()))
            return x
        if self.training and self.learning:
            return learned_rounding(x, self.log_scale.exp(), self.zero_point)
        scale, zero_point = self.rounding()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)


def _straight_through_round(value: torch.Tensor) -> torch.Tensor:
    """round() forward, identity backward."""
    return value + (value.round() - value).detach()


def learned_rounding(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """uint8 fake quantization that is differentiable in its scale and zero point (LSQ+).

    Forward it equals `torch.fake_quantize_per_tensor_affine` at (scale, round(zero point)).
    Backward: x gets a straight-through gradient inside the range and none outside; the scale
    gets each value's rounding error inside and the clipped level outside, so that clipping
    and rounding error are traded against the loss.
    """
    zero = _straight_through_round(zero_point).clamp(0, 255)
    levels = (_straight_through_round(x / scale) + zero).clamp(0, 255)
    return (levels - zero) * scale


class RoundedWeights(nn.Module):
    """A conv or linear layer computing with its weight rounded to int8 per output channel;
    the float weight underneath is what trains (straight-through)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        self.calibrating = False  # calibration runs the float model, as ORT's does

    def forward(self, x):
        if self.calibrating:
            return self.layer(x)
        weight = self.layer.weight
        scale = weight_scales(weight.detach())
        zero = torch.zeros(len(scale), dtype=torch.int32, device=weight.device)
        rounded = torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)
        if isinstance(self.layer, nn.Linear):
            return nn.functional.linear(x, rounded, self.layer.bias)
        return self.layer._conv_forward(x, rounded, self.layer.bias)


def weight_scales(weight: torch.Tensor) -> torch.Tensor:
    """ORT's symmetric int8 scale of each output channel: 2·max|w| / 254, in float64, stored as float32."""
    largest = weight.abs().flatten(1).amax(1).double()
    scale = (2 * largest / 254).float()
    return torch.where(scale < torch.finfo(torch.float32).tiny, torch.ones_like(scale), scale)


def fake_quantized(folded: fx.GraphModule, prepared_onnx: bytes, int8_onnx: bytes,
                   sample: np.ndarray) -> fx.GraphModule:
    """A copy of `folded` that rounds its weights and activations where `int8_onnx` does.

    `prepared_onnx` is the float graph `int8_onnx` was quantized from (after ORT's
    pre-processing): the activation tensors are named there, and matched to torch nodes by
    their values on `sample`. A rounded tensor found nowhere in torch is left out (with a
    warning): its range is then calibrated after training rather than learned.
    """
    model = copy.deepcopy(folded).eval()
    _, layers = int8_twin(folded, int8_onnx)
    for name, layer in layers.items():
        if layer.quantized and layer.inputs == "static":
            model.set_submodule(name, RoundedWeights(model.get_submodule(name)))
    tensors = rounded_tensors(onnx.load_from_string(int8_onnx), prepared_onnx)
    nodes = _matching_nodes(folded, prepared_onnx, tensors, sample)
    missing = [t for t in tensors if t not in nodes]
    if missing:
        warnings.warn(f"QAT does not simulate the rounding of {len(missing)} tensors of the int8 graph "
                      f"({', '.join(missing[:3])}); their ranges are calibrated after training", stacklevel=3)
    for index, (tensor, node_name) in enumerate(nodes.items()):
        _round_after(model, node_name, f"activation_range_{index}", ActivationRange(tensor))
    model.recompile()
    return model


def rounded_tensors(int8: onnx.ModelProto, prepared_onnx: bytes) -> list[str]:
    """The activation tensors that the QDQ graph rounds with a scale of their own, named as in
    the float graph. A tensor that borrows another's scale (Flatten, Reshape: values already on
    that grid) is left out: rounding it again changes nothing."""
    constants = {t.name for t in int8.graph.initializer}
    prepared = onnx.load_from_string(prepared_onnx).graph
    float_names = {i.name for i in prepared.input} | {name for node in prepared.node for name in node.output}
    consumers = {name: node for node in int8.graph.node for name in node.input}
    names = []
    for node in int8.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants:
            continue
        # a graph output is renamed around its rounding: its float name is the dequantized output's
        name = node.input[0] if node.input[0] in float_names else consumers[node.output[0]].output[0]
        if node.input[1] == f"{name}_scale":
            names.append(name)
    return names


def _matching_nodes(folded: fx.GraphModule, prepared_onnx: bytes, tensors: list[str],
                    sample: np.ndarray) -> dict[str, str]:
    """For each ONNX tensor, the last torch node (in graph order) whose output equals it on `sample`."""
    onnx_values = _onnx_values(prepared_onnx, tensors, sample)
    torch_values = _node_values(folded, sample)
    found = {}
    for tensor, value in onnx_values.items():
        tolerance = 1e-4 * (np.abs(value).max() + 1e-6)
        for node_name, output in torch_values.items():
            if output.shape == value.shape and np.allclose(output, value, rtol=1e-3, atol=tolerance):
                found[tensor] = node_name
    return found


def _onnx_values(prepared_onnx: bytes, tensors: list[str], sample: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    model = onnx.load_from_string(prepared_onnx)
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                              for name in tensors if name not in outputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(tensors, {session.get_inputs()[0].name: np.ascontiguousarray(sample, np.float32)})
    return dict(zip(tensors, values))


class _Recorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule):
        super().__init__(module)
        self.values: dict[str, np.ndarray] = {}

    def run_node(self, node):
        output = super().run_node(node)
        # the output node repeats its argument's value; rounding must go before it, not after
        if node.op != "output" and isinstance(output, torch.Tensor) and output.is_floating_point():
            self.values[node.name] = output.detach().cpu().numpy()
        return output


def _node_values(folded: fx.GraphModule, sample: np.ndarray) -> dict[str, np.ndarray]:
    recorder = _Recorder(folded.eval())
    with torch.no_grad():
        recorder.run(torch.as_tensor(sample))
    return recorder.values


def _round_after(model: fx.GraphModule, node_name: str, module_name: str, observer: ActivationRange) -> None:
    """Make every user of the node read its output through `observer`."""
    model.add_submodule(module_name, observer)
    node = next(n for n in model.graph.nodes if n.name == node_name)
    with model.graph.inserting_after(node):
        rounded = model.graph.call_module(module_name, (node,))
    node.replace_all_uses_with(rounded, delete_user_cb=lambda user: user is not rounded)


def observers(model: nn.Module) -> list[ActivationRange]:
    return [m for m in model.modules() if isinstance(m, ActivationRange)]


def calibrate(model: nn.Module, calibration: np.ndarray, batch_size: int) -> None:
    """Each observer's range over the calibration inputs, on the float model: PTQ's min-max ranges."""
    roundings = [m for m in model.modules() if isinstance(m, (ActivationRange, RoundedWeights))]
    for module in roundings:
        module.calibrating = True
    try:
        with torch.no_grad():
            for start in range(0, len(calibration), batch_size):
                model(torch.as_tensor(calibration[start : start + batch_size]))
    finally:
        for module in roundings:
            module.calibrating = False


def learned_roundings(model: nn.Module) -> dict[str, dict]:
    """The observers' ranges as ORT's TensorQuantOverrides: the graph gets exactly these scales."""
    overrides = {}
    for observer in observers(model):
        scale, zero_point = observer.rounding()
        overrides[observer.tensor] = [{"scale": np.array(scale, np.float32), "zero_point": np.array(zero_point, np.uint8)}]
    return overrides


def graph_roundings(int8_onnx: bytes) -> dict[str, tuple[float, int]]:
    """(scale, zero point) of each activation QuantizeLinear of a QDQ graph, by its scale's name."""
    graph = onnx.load_from_string(int8_onnx).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return {node.input[1].removesuffix("_scale"): (float(constants[node.input[1]]), int(constants[node.input[2]]))
            for node in graph.node
            if node.op_type == "QuantizeLinear" and node.input[0] not in constants}
