"""Keeping a graph's int8 within an accuracy budget without a torch twin: work on the ORT graph itself.

The CNN fallback (compression/fallback.py) ranks layers on an fx twin, which a transformer does not
have. Here each quantized MatMul or Gemm of the QDQ graph is ranked by an edit of the graph: its
activation inputs are wired past their QuantizeLinear/DequantizeLinear pair, so that node alone
reads float activations (its weights stay rounded: per-channel int8 weights cost little), and the
gain is how much closer to the float graph's scores the whole graph then comes. That costs one
ORT session a node and no re-calibration. The most harmful nodes then go to ORT's quantizer as
`nodes_to_exclude`, in order of harm; the fewest that meet the budget are found by doubling and
bisection (each try is one calibration), assuming that more float nodes never cost accuracy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort

from leanlens.compression.fallback import _accuracy
from leanlens.data import Dataset
from leanlens.errors import BadOption

# at most this many samples rank the nodes: enough to order them, one ORT run a node
SENSITIVITY_SAMPLES = 128
PRODUCTS = ("MatMul", "Gemm")  # the operators static int8 quantizes in a transformer


def within_drop_graph(fp32_onnx: bytes, int8_onnx: bytes, data: Dataset, max_drop: float,
                      requantize: Callable[[list[str]], bytes]) -> bytes:
    """The int8 graph with the fewest float MatMul/Gemm nodes whose accuracy on `data` is at most
    `max_drop` points below the float graph's; `requantize(names)` quantizes with those nodes float."""
    floor = _accuracy(fp32_onnx, data) - max_drop / 100
    if _accuracy(int8_onnx, data) >= floor:
        return int8_onnx
    ranked = most_harmful_nodes(fp32_onnx, int8_onnx, data.x[:SENSITIVITY_SAMPLES])
    tried: dict[int, bytes | None] = {}

    def meets(count: int) -> bool:
        graph = requantize(ranked[:count])
        tried[count] = graph if _accuracy(graph, data) >= floor else None
        return tried[count] is not None

    fewest = _fewest(len(ranked), meets)
    if fewest is None:
        raise BadOption(f"no int8 model stays within max_drop={max_drop}: it takes every MatMul in float",
                        "allow a larger max_drop, or try calibrate_method='percentile' or more calibration_samples")
    return tried[fewest]


def _fewest(total: int, meets: Callable[[int], bool]) -> int | None:
    """The smallest count in 1..total-1 for which `meets` holds, for a `meets` that stays true once
    true: doubling finds a count that meets, bisection the first one. None when total-1 misses
    (all nodes in float is the float model, not an int8 one)."""
    most = total - 1
    low, high = 0, 1  # low is known to miss: 0 is plain int8, checked before
    while high <= most and not meets(high):
        low, high = high, (most + 1 if high == most else min(2 * high, most))
    if high > most:
        return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if meets(middle) else (middle, high)
    return high


def most_harmful_nodes(fp32_onnx: bytes, int8_onnx: bytes, x: np.ndarray) -> list[str]:
    """The quantized MatMul/Gemm nodes of `int8_onnx`, ordered by how much closer to the float
    graph's scores on `x` the graph comes when that node alone reads float activations."""
    reference = _scores(fp32_onnx, x)
    model = onnx.load_from_string(int8_onnx)
    error = _error(model, x, reference)
    gains = {}
    for node in quantized_products(model):
        bypassed = onnx.ModelProto()
        bypassed.CopyFrom(model)
        _read_float(bypassed, node.name)
        gains[node.name] = error - _error(bypassed, x, reference)
    return sorted(gains, key=gains.get, reverse=True)


def quantized_products(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMul/Gemm nodes whose activation input comes rounded (from a DequantizeLinear)."""
    rounded = _rounded_activations(model)
    return [node for node in model.graph.node
            if node.op_type in PRODUCTS and any(name in rounded for name in node.input)]


def float_nodes(int8_onnx: bytes) -> list[str]:
    """The names of the MatMul/Gemm nodes that a static int8 graph computes in float."""
    model = onnx.load_from_string(int8_onnx)
    quantized = {node.name for node in quantized_products(model)}
    return [node.name for node in model.graph.node if node.op_type in PRODUCTS and node.name not in quantized]


def _rounded_activations(model: onnx.ModelProto) -> dict[str, str]:
    """DequantizeLinear output → the float tensor it stands for, for rounded activations (not weights)."""
    constants = {t.name for t in model.graph.initializer}
    quantized_from = {node.output[0]: node.input[0] for node in model.graph.node
                      if node.op_type == "QuantizeLinear" and node.input[0] not in constants}
    return {node.output[0]: quantized_from[node.input[0]] for node in model.graph.node
            if node.op_type == "DequantizeLinear" and node.input[0] in quantized_from}


def _read_float(model: onnx.ModelProto, node_name: str) -> None:
    """Rewire the node's rounded activation inputs to the float tensors they were rounded from."""
    rounded = _rounded_activations(model)
    node = next(n for n in model.graph.node if n.name == node_name)
    for index, name in enumerate(node.input):
        if name in rounded:
            node.input[index] = rounded[name]


def _error(model: onnx.ModelProto, x: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean((_scores(model.SerializeToString(), x) - reference) ** 2))


def _scores(graph: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()[0]
    dtype = np.int64 if inputs.type == "tensor(int64)" else np.float32
    return session.run(None, {inputs.name: np.ascontiguousarray(x, dtype=dtype)})[0]

