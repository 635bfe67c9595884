"""int4-weight: linear layers on ORT's MatMulNBits, weights within half a step, a twin that matches."""

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from errors_support import one_line
from onnx import helper, numpy_helper
from test_quantize_dynamic import MLP

import leanlens as ll
from leanlens.compression.int4 import dequantize_nbits
from leanlens.errors import BadOption
from leanlens.models import SmallResNet


@pytest.fixture(scope="module")
def models(digits_mlp):
    model, (x, _) = digits_mlp
    return model, ll.quantize(model, x, scheme="int4-weight")


@pytest.fixture(scope="module")
def digits_mlp():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    torch.manual_seed(0)
    return ll.finetune(MLP(), (x, y), epochs=3.0, lr=3e-3), (x, y)


def nbits_nodes(model):
    graph = onnx.load_from_string(model.model_bytes).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return [n for n in graph.node if n.op_type == "MatMulNBits"], constants, graph


def ort_weight(node, constants) -> np.ndarray:
    """What ORT's own kernel multiplies by: the node alone, applied to the identity matrix."""
    k = next(a.i for a in node.attribute if a.name == "K")
    n = next(a.i for a in node.attribute if a.name == "N")
    single = helper.make_graph(
        [helper.make_node("MatMulNBits", ["x", *node.input[1:]], ["y"], domain="com.microsoft",
                          **{a.name: helper.get_attribute_value(a) for a in node.attribute})],
        "one", [helper.make_tensor_value_info("x", 1, [k, k])], [helper.make_tensor_value_info("y", 1, [k, n])],
        [numpy_helper.from_array(constants[name], name) for name in node.input[1:] if name])
    proto = helper.make_model(single, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.eye(k, dtype=np.float32)})[0].T


def test_every_linear_layer_runs_the_4_bit_kernel(models):
    int4 = models[1]
    nodes, constants, graph = nbits_nodes(int4)
    counts = Counter(node.op_type for node in graph.node)
    assert len(nodes) == 3 and counts["Gemm"] == 0 and counts["MatMul"] == 0
    assert all(constants[node.input[1]].dtype == np.uint8 for node in nodes)  # two 4-bit weights a byte
    assert len(int4.model_bytes) < 0.2 * len(int4.fp32.model_bytes)


def test_weights_read_back_as_orts_kernel_computes_them_within_one_step(models):
    fp32, int4 = models
    nodes, constants, _ = nbits_nodes(int4)
    originals = [fp32.module.layers[i].weight.detach().numpy() for i in (0, 2, 4)]
    for node, original in zip(nodes, originals):
        ours = dequantize_nbits(node, constants)
        np.testing.assert_allclose(ours, ort_weight(node, constants), rtol=0, atol=1e-6)
        step = np.abs(np.repeat(constants[node.input[2]].reshape(len(ours), -1), 32, axis=1))[:, : ours.shape[1]]
        # half a step of rounding, or one step where ORT clips a block's largest positive weight to 7 steps
        error = np.abs(ours - original)
        assert np.all(error <= step + 1e-7) and np.mean(error <= 0.5 * step + 1e-7) > 0.95


def test_the_twin_computes_what_the_graph_computes(models, digits_mlp):
    fp32, int4 = models
    x, y = digits_mlp[1]
    fidelity = ll.explain(int4, x[:128], "saliency").stand_in_fidelity
    assert fidelity.agreement == 1.0 and fidelity.max_error < 1e-4
    assert (int4.predict(x).argmax(1) == y).mean() >= (fp32.predict(x).argmax(1) == y).mean() - 0.03


def test_a_saved_int4_model_loads_with_the_same_twin(models, digits_mlp, tmp_path):
    int4 = models[1]
    loaded = ll.load(ll.save(int4, tmp_path / "m.leanlens"))
    x = digits_mlp[1][0][:16]
    np.testing.assert_array_equal(loaded.predict(x), int4.predict(x))
    np.testing.assert_allclose(loaded.twin.predict(x), int4.twin.predict(x), rtol=0, atol=1e-6)


def test_a_conv_model_is_refused_rather_than_left_half_float():
    with pytest.raises(BadOption, match="no 4-bit convolution kernel.*8 conv layers") as error:
        ll.quantize(SmallResNet(width=8).eval(), ll.data.load("lesions", n=4).x, scheme="int4-weight")
    one_line(error)
