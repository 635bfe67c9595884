"""int8-dynamic: real MatMulInteger kernels for the linear layers, and a twin that rounds as they do."""

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from errors_support import one_line
from sklearn.datasets import load_digits
from torch import nn

import leanlens as ll
from leanlens.errors import BadOption
from leanlens.models import SmallResNet


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16).astype(np.float32), y


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.layers(x)


@pytest.fixture(scope="module")
def mlp(digits):
    torch.manual_seed(0)
    return ll.finetune(MLP(), digits, epochs=3.0, lr=3e-3)


def ops(model) -> Counter:
    return Counter(node.op_type for node in onnx.load_from_string(model.model_bytes).graph.node)


def test_every_linear_layer_runs_an_integer_kernel_and_none_stays_float(mlp, digits):
    dynamic = ll.quantize(mlp, digits[0], scheme="int8-dynamic")
    counts = ops(dynamic)
    assert counts["MatMulInteger"] == 3 and counts["DynamicQuantizeLinear"] == 3
    assert counts["Gemm"] == 0 and counts["MatMul"] == 0
    x, y = digits
    fp32, int8 = mlp.predict(x).argmax(1), dynamic.predict(x).argmax(1)
    assert (fp32 == int8).mean() >= 0.98 and (int8 == y).mean() >= (fp32 == y).mean() - 0.01


def test_the_twin_rounds_each_input_to_its_own_range_as_the_graph_does(mlp, digits):
    dynamic = ll.quantize(mlp, digits[0], scheme="int8-dynamic")
    x = digits[0][:64]
    deployed, twin, fp32 = dynamic.predict(x, batch_size=64), dynamic.twin.predict(x, batch_size=64), mlp.predict(x)
    twin_error, fp32_error = np.abs(twin - deployed).mean(), np.abs(fp32 - deployed).mean()
    assert twin_error < 0.2 * fp32_error  # the float model is the worse stand-in
    fidelity = ll.explain(dynamic, x, "saliency", batch_size=64).stand_in_fidelity
    assert fidelity.agreement == 1.0 and fidelity.mean_error == pytest.approx(twin_error, rel=1e-3)


def test_a_saved_dynamic_model_loads_with_the_same_twin(mlp, digits, tmp_path):
    dynamic = ll.quantize(mlp, digits[0], scheme="int8-dynamic")
    loaded = ll.load(ll.save(dynamic, tmp_path / "m.leanlens"))
    x = digits[0][:32]
    np.testing.assert_array_equal(loaded.predict(x), dynamic.predict(x))
    np.testing.assert_allclose(loaded.twin.predict(x), dynamic.twin.predict(x), rtol=0, atol=1e-6)


def test_a_model_without_linear_layers_is_refused_in_one_line():
    convs = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(BadOption, match="quantizes linear layers.*has none") as error:
        ll.quantize(convs.eval(), np.zeros((4, 1, 8, 8), np.float32), scheme="int8-dynamic")
    one_line(error)


def test_a_cnn_keeps_its_convs_float_and_its_head_integer():
    torch.manual_seed(0)
    dynamic = ll.quantize(SmallResNet(width=8).eval(), ll.data.load("lesions", n=8).x, scheme="int8-dynamic")
    counts = ops(dynamic)
    assert counts["MatMulInteger"] == 1 and counts["Conv"] == 8 and counts["ConvInteger"] == 0
