"""The text classifier exported to ONNX and quantized: each scheme's low-bit kernels, its agreement
with the float model on held-out words, and one-line refusals."""

import copy
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
from leanlens.compression.fakequant import graph_roundings
from leanlens.compression.qat import training_options
from leanlens.compression.quantize import _quantize_static
from leanlens.compression.text_qat import train_text_int8
from leanlens.compression.text_quantize import STATIC_OPS, STATIC_OPTIONS, text_to_onnx
from leanlens.compression.twin import float_layers
from leanlens.errors import BadInput, MissingCapability

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
    read_by = {name: node.op_type for node in graph.node for name in node.input}
    for node in matmuls:  # both operands come rounded to int8: ORT runs them as integer products
        assert [made_by.get(name) for name in node.input[:2]] == ["DequantizeLinear"] * 2, node.name
        # ... giving float outputs (MatMulIntegerToFloat): one uint8 range would flatten BERT's outlier dimensions
        assert read_by.get(node.output[0]) != "QuantizeLinear", node.name
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


def with_outlier_dimension(model, scale: float = 1000.0):
    """The same function, with one dimension of the head's input `scale` times larger (the last
    LayerNorm's output, and the head's weights on it divided back): BERT's outlier features, made
    to order. On one uint8 range that dimension leaves every other at a step's width of zero."""
    model = copy.deepcopy(model)
    norm = model.encoder.encoder.layer[-1].output.LayerNorm
    with torch.no_grad():
        norm.weight[0] *= scale
        norm.bias[0] *= scale
        model.head.weight[:, 0] /= scale
    return model


def test_max_drop_sends_the_harmful_matmul_back_to_float_on_the_graph_itself(workdir, monkeypatch):
    train, _ = sentiment_task()
    data = train.subset(np.arange(96))
    model = with_outlier_dimension(sentiment_model())
    monkeypatch.chdir(workdir)
    plain = ll.quantize(model, data, scheme="int8", calibration_samples=32)
    guarded = ll.quantize(model, data, scheme="int8", calibration_samples=32, max_drop=1.0)
    float_accuracy = (plain.fp32.predict(data.x).argmax(1) == data.y).mean()
    assert (plain.predict(data.x).argmax(1) == data.y).mean() < float_accuracy - 0.01  # plain int8 misses
    assert (guarded.predict(data.x).argmax(1) == data.y).mean() >= float_accuracy - 0.01
    assert float_layers(plain) == [] and float_layers(guarded) == ["/head/Gemm"]  # the one node it needs
    graph = onnx.load_from_string(guarded.model_bytes).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    head = next(node for node in graph.node if node.name == "/head/Gemm")
    assert made_by[head.input[0]] != "DequantizeLinear" and ops(guarded.model_bytes)["Gemm"] == 1


@pytest.fixture(scope="module")
def qat_run():
    """QAT from an untrained head (the loss starts at ln 2), a few steps: the text path's training."""
    train, _ = sentiment_task()
    model = copy.deepcopy(sentiment_model())
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    calibration = train.x[:32]

    def quantize(graph, overrides):
        return _quantize_static(graph, calibration, 32, "minmax", [], STATIC_OPS, symbolic_shapes=False,
                                overrides=overrides, extra_options=STATIC_OPTIONS)

    training = training_options("int8-qat", train.subset(np.arange(192)), 1.0, 1e-3, None, "minmax")
    return model, train_text_int8(model, training, calibration, 32, quantize)


def test_text_qat_trains_moves_the_ranges_and_deploys_on_ptqs_graph(qat_run, quantized):
    model, run = qat_run
    assert run.losses[0] == pytest.approx(np.log(2), abs=1e-6)  # a zero head scores both classes alike
    # measured here: 0.63 and 0.65 at the last two of 6 steps; exactly ln 2 at every step when nothing trains
    assert max(run.losses[-2:]) < 0.95 * np.log(2)
    # every linear layer's input is observed (query, key and value share one): 4 a layer, and the head's
    assert len(run.start) == SHALLOW_LAYERS * 4 + 1 == len(run.learned)
    assert all(run.start[t][0]["scale"] != run.learned[t][0]["scale"] for t in run.start)
    assert ops(run.int8_onnx) == ops(quantized["int8"].model_bytes)  # node for node PTQ's operators
    rounded = graph_roundings(run.int8_onnx)
    for tensor, (learned,) in run.learned.items():  # ... holding exactly the learned ranges
        assert rounded[tensor] == (float(learned["scale"]), int(learned["zero_point"]))
    head = run.module.head.weight.detach()
    assert head.abs().max() > 0 and torch.equal(model.head.weight, torch.zeros_like(head))  # a copy trained


def test_text_qat_without_labels_and_static_int8_on_one_sample_are_one_line():
    train, _ = sentiment_task()
    with pytest.raises(BadInput, match="int8-qat") as error:
        ll.quantize(sentiment_model(), train.x, scheme="int8-qat")
    assert "(x, y)" in one_line(error)
    for scheme in ("int8", "int8-qat"):
        with pytest.raises(BadInput, match="one sample") as error:
            ll.quantize(sentiment_model(), train.subset([0]), scheme=scheme)
        one_line(error)


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
