"""The text classifier exported to ONNX and quantized: each scheme's low-bit kernels, its agreement
with the float model on held-out words, and one-line refusals."""

import os
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from errors_support import one_line
from text_support import SHALLOW_LAYERS, sentiment_task
from text_support import shallow_sentiment_model as sentiment_model

import leanlens as ll
from leanlens import text
from leanlens.compression.text_quantize import text_to_onnx
from leanlens.errors import BadInput, BadOption, MissingCapability

SCHEMES = ("int8", "int8-dynamic", "int4-weight")
# the operator that does each scheme's arithmetic in low bits, and how many there must be: each
# layer's 6 linear layers (query, key, value, output, two feed-forward) and the head. The tests run
# on the first layers of the pretrained encoder; benchmarks/text_quantization.py on all six.
LINEAR_LAYERS = SHALLOW_LAYERS * 6 + 1
ATTENTION_PRODUCTS = SHALLOW_LAYERS * 2  # Q·Kᵀ and softmax·V: activations on both sides


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An empty working directory for the quantizers: ORT's tools write temporary files beside it."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="module")
def quantized(workdir):
    train, _ = sentiment_task()
    before = os.getcwd()
    os.chdir(workdir)
    try:
        return {scheme: ll.quantize(sentiment_model(), train, scheme=scheme, calibration_samples=64)
                for scheme in SCHEMES}
    finally:
        os.chdir(before)


def ops(graph: bytes) -> Counter:
    return Counter(node.op_type for node in onnx.load_from_string(graph).graph.node)


def test_the_exported_graph_scores_as_torch_does_at_any_batch_and_length(quantized):
    model, graph = sentiment_model(), quantized["int8"].fp32  # traced on one row of 16 tokens
    inputs = graph.session.get_inputs()[0]
    assert inputs.type == "tensor(int64)" and not any(isinstance(axis, int) for axis in inputs.shape)
    for length in (5, 16, 40):
        ids = text.tokenize(["superb", "a dreadful, boring mess", "meh"], max_length=length)
        with torch.no_grad():
            expected = model(torch.as_tensor(ids)).numpy()
        # float32 arithmetic in another order: scores of size ~3 agree to 1e-4
        np.testing.assert_allclose(graph.predict(ids), expected, atol=1e-4)


def test_each_scheme_computes_its_linear_layers_with_low_bit_kernels(quantized):
    dynamic, int4, static = ops(quantized["int8-dynamic"].model_bytes), ops(quantized["int4-weight"].model_bytes), \
        ops(quantized["int8"].model_bytes)
    assert dynamic["MatMulInteger"] == LINEAR_LAYERS and dynamic["MatMul"] == ATTENTION_PRODUCTS
    assert int4["MatMulNBits"] == LINEAR_LAYERS and int4["MatMul"] == ATTENTION_PRODUCTS
    graph = onnx.load_from_string(quantized["int8"].model_bytes).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    matmuls = [node for node in graph.node if node.op_type in ("MatMul", "Gemm")]
    assert len(matmuls) == LINEAR_LAYERS + ATTENTION_PRODUCTS == static["MatMul"] + static["Gemm"]
    for node in matmuls:  # both operands come rounded to int8: ORT runs them as integer products
        assert [made_by.get(name) for name in node.input[:2]] == ["DequantizeLinear"] * 2, node.name
    assert all(q.fp32 is not None and ops(q.fp32.model_bytes)["QuantizeLinear"] == 0 for q in quantized.values())


def test_the_quantized_models_agree_with_the_float_model_on_held_out_words(quantized):
    _, test = sentiment_task()
    float_classes = quantized["int8"].fp32.predict(test.x).argmax(1)
    np.testing.assert_array_equal(float_classes, ll.wrap(sentiment_model()).predict(test.x).argmax(1))
    for scheme, model in quantized.items():
        classes = model.predict(test.x).argmax(1)
        agreement = (classes == float_classes).mean()
        # measured here on 300 held-out words: int8 0.95, int8-dynamic 0.99, int4-weight 0.97
        assert agreement >= 0.9, (scheme, agreement)
        assert (classes == test.y).mean() >= 0.7, scheme


def test_quantizing_leaves_no_file_in_the_working_directory(quantized, workdir):
    assert list(workdir.iterdir()) == []  # ORT's symbolic shape inference, when it gives up, saves 90 MB there


def test_the_quantized_text_model_gives_no_gradients_and_says_so(quantized):
    _, test = sentiment_task()
    with pytest.raises(MissingCapability) as error:
        ll.explain(quantized["int8-dynamic"], test.x[:2], method="saliency")
    assert "gradients" in one_line(error) and "occlusion" in str(error.value)


def test_text_models_refuse_max_drop_in_one_line():
    train, _ = sentiment_task()
    with pytest.raises(BadOption, match="max_drop") as error:
        ll.quantize(sentiment_model(), train, scheme="int8", max_drop=1.0)
    one_line(error)


def test_text_models_refuse_qat_in_one_line_naming_the_schemes_that_work():
    train, _ = sentiment_task()
    with pytest.raises(BadOption, match="int8-qat") as error:
        ll.quantize(sentiment_model(), train, scheme="int8-qat")
    assert "int8-dynamic" in one_line(error)


def test_calibration_data_that_is_not_token_ids_is_refused_before_export(quantized):
    train, _ = sentiment_task()
    bad = train.x.copy()
    bad[7, 2] = 0.5  # one fraction, in a row other than the first
    with pytest.raises(BadInput, match="whole numbers") as error:
        ll.quantize(sentiment_model(), bad, scheme="int8")
    one_line(error)
    with pytest.raises(BadInput, match="fractions") as error:
        quantized["int8"].fp32.predict(bad[:8])
    one_line(error)


def test_the_text_exporter_refuses_other_modules_in_one_line():
    with pytest.raises(BadInput, match="TextClassifier") as error:
        text_to_onnx(torch.nn.Linear(4, 2), np.zeros((1, 4), dtype=np.int64))
    one_line(error)


def test_a_quantized_text_model_saves_and_loads_with_its_float_graph(quantized, tmp_path):
    _, test = sentiment_task()
    q = quantized["int8-dynamic"]
    loaded = ll.load(ll.save(q, tmp_path / "text.leanlens"))
    assert loaded.model_bytes == q.model_bytes and loaded.fp32.model_bytes == q.fp32.model_bytes
    np.testing.assert_array_equal(loaded.predict(test.x[:16]), q.predict(test.x[:16]))
