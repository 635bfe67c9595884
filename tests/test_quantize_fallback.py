"""max_drop: int8 layers whose rounding costs accuracy go back to float, the most harmful first."""

import numpy as np
import onnx
import pytest
import torch
from errors_support import one_line
from sklearn.datasets import load_digits
from test_quantize_dynamic import MLP

import leanlens as ll
from leanlens.compression.twin import float_layers
from leanlens.errors import BadInput, BadOption


@pytest.fixture(scope="module")
def skewed():
    """Digits, plus one calibration image with a pixel of 400: min-max calibration then rounds the
    first layer's inputs in steps of 1.6, so every ordinary pixel (0..1) becomes 0 or 1.6."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    x[0, 5] = 400.0
    torch.manual_seed(0)
    model = ll.finetune(MLP(), (x[1:], y[1:]), epochs=3.0, lr=3e-3)
    return model, ll.data.Dataset(x, y)


def accuracy(model, data) -> float:
    return float((model.predict(data.x).argmax(1) == data.y).mean())


def test_the_layer_whose_rounding_hurts_goes_back_to_float_and_accuracy_holds(skewed):
    model, data = skewed
    plain = ll.quantize(model, data)
    guarded = ll.quantize(model, data, max_drop=1.0)
    fp32 = accuracy(guarded.fp32, data)
    assert accuracy(plain, data) < fp32 - 0.10  # the outlier makes plain int8 lose badly
    assert accuracy(guarded, data) >= fp32 - 0.01
    # the first layer, whose inputs the outlier ruins, is the first to go back; not every layer does
    assert float_layers(plain) == [] and "layers.0" in float_layers(guarded) and len(float_layers(guarded)) < 3
    graph = onnx.load_from_string(guarded.model_bytes).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    weights = [producers.get(node.input[1], "constant") for node in graph.node if node.op_type == "Gemm"]
    assert weights[0] == "constant" and weights.count("constant") == len(float_layers(guarded))
    assert weights.count("DequantizeLinear") == 3 - len(float_layers(guarded))
    assert ll.explain(guarded, data.x[1:65], "saliency").stand_in_fidelity.agreement >= 0.98


def test_a_model_within_the_budget_is_left_as_it_is(skewed):
    model, data = skewed
    clean = data.subset(np.arange(1, len(data)))
    assert ll.quantize(model, clean, max_drop=1.0).model_bytes == ll.quantize(model, clean).model_bytes


@pytest.mark.parametrize("data, kwargs, error, message", [
    ("labelled", {"max_drop": -1}, BadOption, "max_drop=-1"),
    ("labelled", {"max_drop": 1, "scheme": "int8-dynamic"}, BadOption, "max_drop works with scheme='int8'"),
    ("bare", {"max_drop": 1}, BadInput, "max_drop needs labels"),
])
def test_a_guard_that_cannot_work_is_refused_before_any_work(skewed, data, kwargs, error, message):
    model, labelled = skewed
    with pytest.raises(error, match=message) as raised:
        ll.quantize(model, labelled if data == "labelled" else labelled.x, **kwargs)
    one_line(raised)
