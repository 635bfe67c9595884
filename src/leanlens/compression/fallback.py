"""Keeping int8 within an accuracy budget: the layers that hurt most go back to float.

Which layers hurt is read off the twin, not off repeated quantization: with one layer's
rounding switched off at a time, the twin shows how much closer to the float model the
scores come. That costs one forward pass a layer; each layer put back in float then costs
one re-quantization and one accuracy check on ONNX Runtime, in order of harm, until the
drop is within `max_drop`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import fx

from leanlens.compression.twin import QuantizedInput, int8_twin
from leanlens.data import Dataset
from leanlens.errors import BadOption
from leanlens.models.onnx_model import OnnxModel

# at most this many samples rank the layers: enough to order them, cheap for a large model
SENSITIVITY_SAMPLES = 256


def within_drop(folded: fx.GraphModule, fp32_onnx: bytes, int8_onnx: bytes, data: Dataset, max_drop: float,
                requantize: Callable[[list[str]], bytes]) -> bytes:
    """The int8 graph with the fewest float layers whose accuracy on `data` is at most `max_drop`
    points below the float graph's; `requantize(nodes)` quantizes with those nodes left float."""
    floor = _accuracy(fp32_onnx, data) - max_drop / 100
    if _accuracy(int8_onnx, data) >= floor:
        return int8_onnx
    twin, layers = int8_twin(folded, int8_onnx)
    ranked = _most_harmful_first(folded, twin, data.x[:SENSITIVITY_SAMPLES])
    for count in range(1, len(ranked)):
        candidate = requantize([layers[name].node for name in ranked[:count]])
        if _accuracy(candidate, data) >= floor:
            return candidate
    raise BadOption(f"no int8 model stays within max_drop={max_drop}: it takes every layer in float",
                    "allow a larger max_drop, or try calibrate_method='percentile' or more calibration_samples")


def _accuracy(graph: bytes, data: Dataset) -> float:
    return float((OnnxModel(graph).predict(data.x).argmax(1) == data.y).mean())


def _most_harmful_first(folded: fx.GraphModule, twin: fx.GraphModule, x: np.ndarray) -> list[str]:
    """The twin's quantized layers, ordered by how much closer to the float scores the twin
    comes when that layer alone computes in float."""
    batch = torch.as_tensor(x)
    with torch.no_grad():
        reference = folded(batch)
        error = float((twin(batch) - reference).pow(2).mean())
        gains = {}
        for name, layer in list(twin.named_modules()):
            if isinstance(layer, QuantizedInput):
                twin.set_submodule(name, folded.get_submodule(name))
                gains[name] = error - float((twin(batch) - reference).pow(2).mean())
                twin.set_submodule(name, layer)
    return sorted(gains, key=gains.get, reverse=True)

