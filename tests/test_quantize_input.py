"""Post-training quantization takes a bare batch (it needs no labels), checked like any input."""

import numpy as np
import onnx
import pytest
import torch
from errors_support import one_line
from onnx import numpy_helper

import leanlens as ll
from leanlens.errors import BadInput, UnknownMethod
from leanlens.models import SmallResNet


def test_a_bare_batch_calibrates_like_the_same_batch_with_labels():
    torch.manual_seed(0)
    model = SmallResNet(width=8).eval()
    x = ll.data.load("lesions", n=32, seed=5).x
    bare, labelled = ll.quantize(model, x), ll.quantize(model, (x, np.zeros(len(x), dtype=int)))
    assert bare.model_bytes == labelled.model_bytes


@pytest.mark.parametrize("batch, message", [
    (np.full((4, 1, 32, 32), np.nan, np.float32), "NaN or inf"),
    (np.zeros(8, np.float32), "batch first"),
    (np.array([["a"]]), "must hold numbers"),
])
def test_a_bad_bare_batch_is_one_line(batch, message):
    with pytest.raises(BadInput, match=message) as error:
        ll.quantize(SmallResNet(width=8).eval(), batch)
    one_line(error)


def activation_scales(int8) -> list[float]:
    graph = onnx.load_from_string(int8.model_bytes).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return [float(values[n.input[1]]) for n in graph.node
            if n.op_type == "QuantizeLinear" and values[n.input[1]].ndim == 0]


def test_percentile_and_entropy_calibration_clip_ranges_that_minmax_keeps(capsys):
    torch.manual_seed(0)
    model = SmallResNet(width=8).eval()
    x = ll.data.load("lesions", n=96, seed=5).x
    # 70 samples in batches of 32: the histogram calibrators need batches of one size, and get them
    quantized = {m: ll.quantize(model, x[:70], calibrate_method=m) for m in ("minmax", "percentile", "entropy")}
    assert capsys.readouterr().out == ""  # ORT's histogram calibrators print progress; none of it reaches the user
    widest = activation_scales(quantized["minmax"])
    for method in ("percentile", "entropy"):
        scales = activation_scales(quantized[method])
        assert len(scales) == len(widest) and all(s <= w * (1 + 1e-6) for s, w in zip(scales, widest))
        # the twin follows whichever ranges the graph holds
        assert ll.explain(quantized[method], x[70:], "gradcam").stand_in_fidelity.agreement == 1.0
    assert any(s < 0.99 * w for s, w in zip(activation_scales(quantized["percentile"]), widest))


def test_an_unknown_calibration_method_is_one_line():
    with pytest.raises(UnknownMethod, match="calibrate_method 'min-max'.*minmax") as error:
        ll.quantize(SmallResNet(width=8).eval(), np.zeros((4, 1, 32, 32), np.float32), calibrate_method="min-max")
    one_line(error)
