"""int8-qat: training with ORT's rounding in the loop, deployed as the very graph PTQ makes."""

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from errors_support import one_line
from onnx import numpy_helper
from sklearn.datasets import load_digits
from test_quantize_dynamic import MLP
from torch import nn

import leanlens as ll
from leanlens.compression.fakequant import (
    RoundedWeights,
    graph_roundings,
    learned_rounding,
    uint8_rounding,
)
from leanlens.compression.onnx_export import fold_batchnorm, to_onnx
from leanlens.compression.qat import train_int8, training_options
from leanlens.compression.twin import float_layers
from leanlens.errors import BadInput, BadOption, UnknownMethod
from leanlens.models import SmallResNet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return ll.data.Dataset((x / 16).astype(np.float32), y)


@pytest.fixture(scope="module")
def mlp(digits):
    torch.manual_seed(0)
    return ll.finetune(MLP(), digits.subset(np.arange(640)), epochs=0.5, lr=3e-3)  # short of converged: QAT has work to do


@pytest.fixture(scope="module")
def trained(mlp, digits):
    source = mlp.module
    folded = fold_batchnorm(source)
    fp32 = to_onnx(folded, torch.as_tensor(digits.x[:1]))
    training = training_options("int8-qat", digits.subset(np.arange(640)), 1.5, 1e-2, None, "minmax")
    ptq = ll.quantize(mlp, digits, calibration_samples=256)
    return train_int8(source, folded, fp32, training, digits.x[:256], 32), ptq


def test_training_starts_at_ptq_moves_the_ranges_and_lowers_the_loss(trained):
    run, ptq = trained
    start = {name: (float(o[0]["scale"]), int(o[0]["zero_point"])) for name, o in run.start.items()}
    # the observers' min-max ranges on the calibration samples are ORT's own calibration
    ptq_roundings = graph_roundings(ptq.model_bytes)
    assert set(start) == set(ptq_roundings) == {"x", "/layers.1/Relu_output_0",
                                                "/layers.3/Relu_output_0", "scores"}
    for name, (scale, zero) in start.items():
        assert scale == pytest.approx(ptq_roundings[name][0], rel=1e-6) and zero == ptq_roundings[name][1]
    learned = {name: float(o[0]["scale"]) for name, o in run.learned.items()}
    moved = [name for name in learned if abs(learned[name] / start[name][0] - 1) > 0.02]
    assert len(moved) >= 2, (start, learned)
    losses = np.array(run.losses)
    quarter = len(losses) // 4
    assert losses[-quarter:].mean() < 0.85 * losses[:quarter].mean()  # flat (±0.1) when nothing trains


def test_the_graph_holds_exactly_the_learned_ranges_and_rounded_weights(trained):
    run, _ = trained
    roundings = graph_roundings(run.int8_onnx)
    for name, override in run.learned.items():
        assert roundings[name] == (float(override[0]["scale"]), int(override[0]["zero_point"]))
    graph = onnx.load_from_string(run.int8_onnx).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for name, layer in run.simulated.named_modules():
        if isinstance(layer, RoundedWeights):
            stored = constants[f"{name}.weight_quantized"].astype(np.float32)
            scale = constants[f"{name}.weight_scale"][:, None]
            ours = torch.fake_quantize_per_channel_affine(
                layer.layer.weight.detach(), torch.as_tensor(scale[:, 0]), torch.zeros(len(scale), dtype=torch.int32),
                0, -127, 127)
            assert np.abs(stored * scale - ours.numpy()).max() <= 1e-6 * np.abs(stored * scale).max()
            assert np.abs(stored).max() == 127  # symmetric: each channel's largest weight takes the last level


def test_the_simulation_scores_as_the_deployed_graph_does(trained, digits, mlp):
    run, _ = trained
    x = digits.x[:512]
    with torch.no_grad():
        simulated = run.simulated(torch.as_tensor(x)).numpy()
    deployed = ll.models.OnnxModel(run.int8_onnx).predict(x)
    float_trained = ll.models.OnnxModel(run.fp32_onnx).predict(x)
    step = run.learned["scores"][0]["scale"]
    error, float_error = np.abs(simulated - deployed), np.abs(float_trained - deployed)
    assert error.mean() < 0.3 * float_error.mean()  # rounding mirrored: far closer than the float model
    assert error.mean() < 0.25 * step and (error < 1e-5).mean() >= 0.8
    assert (simulated.argmax(1) == deployed.argmax(1)).mean() >= 0.99


def test_ranges_are_rounded_as_ort_rounds_them():
    assert uint8_rounding(-1.0, 3.0) == (pytest.approx(4 / 255), 64)  # round(1 / (4 / 255)) = round(63.75)
    assert uint8_rounding(0.5, 2.0) == (pytest.approx(2 / 255), 0)  # the range always holds zero
    assert uint8_rounding(0.0, 0.0) == (1.0, 0)


def ops(model_bytes: bytes) -> Counter:
    return Counter(node.op_type for node in onnx.load_from_string(model_bytes).graph.node)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    data = ll.data.load("lesions", n=96, seed=3)
    model = ll.finetune(SmallResNet(width=8), data, epochs=1.0, lr=3e-3)
    return model, data


def test_a_resnet_comes_out_as_ptq_graph_and_saves_with_its_twin(resnet, tmp_path):
    model, data = resnet
    ptq = ll.quantize(model, data, calibration_samples=64)
    qat = ll.quantize(model, data, "int8-qat", calibration_samples=64, epochs=0.7, lr=1e-3)
    assert ops(qat.model_bytes) == ops(ptq.model_bytes)  # same QDQ pairs, convs, adds, pooling
    assert ops(qat.model_bytes)["Conv"] == 8 and float_layers(qat) == []  # every conv quantized
    assert qat.model_bytes != ptq.model_bytes
    # each batch-norm of the stored float module passes its folded conv through: folding it again
    # gives the weights the graph was quantized from
    source = qat.fp32.twin.module
    assert torch.allclose(source.stem[1].running_var + source.stem[1].eps, torch.ones(8))
    np.testing.assert_allclose(qat.fp32.twin.predict(data.x[:16]), qat.fp32.predict(data.x[:16]), atol=1e-4)
    loaded = ll.load(ll.save(qat, tmp_path / "qat.leanlens"))
    assert loaded.model_bytes == qat.model_bytes and loaded.fp32.model_bytes == qat.fp32.model_bytes
    np.testing.assert_array_equal(loaded.twin.predict(data.x[:16]), qat.twin.predict(data.x[:16]))
    fidelity = ll.explain(loaded, data.x[:16], "gradcam").stand_in_fidelity
    assert fidelity.agreement == 1.0


def test_a_model_with_bias_carrying_convs_and_a_plain_norm_writes_back(digits):
    # conv with its own bias before a norm without affine parameters: the bias must survive folding
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, affine=False), nn.ReLU(), nn.Flatten(),
                           nn.Linear(144, 10))
    module[1].running_mean.uniform_(-1, 1)
    images = ll.data.Dataset(digits.x[:256].reshape(-1, 1, 8, 8), digits.y[:256])
    qat = ll.quantize(module, images, "int8-qat", calibration_samples=64, epochs=0.5, lr=1e-3)
    assert ops(qat.model_bytes)["DequantizeLinear"] == 8  # 2 weights, 2 biases, input, conv output, flatten, scores
    x = images.x[:32]
    np.testing.assert_allclose(qat.fp32.twin.predict(x), qat.fp32.predict(x), atol=1e-4)
    assert (qat.twin.predict(x).argmax(1) == qat.predict(x).argmax(1)).mean() >= 0.95


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 10), nn.Linear(64, 10)

    def forward(self, x):
        return self.a(x) if x.sum() > 0 else self.b(x)


@pytest.mark.parametrize("call, error, message", [
    (lambda m, d: ll.quantize(m, d.x, "int8-qat"), BadInput, "int8-qat' trains, and data is a bare batch"),
    (lambda m, d: ll.quantize(m, d, "int8-qta"), UnknownMethod, "did you mean 'int8-qat'"),
    (lambda m, d: ll.quantize(m, d, "int8", epochs=2), BadOption, "epochs works with scheme='int8-qat'"),
    (lambda m, d: ll.quantize(m, d, "int8-qat", lr=-1.0), BadOption, "lr=-1.0"),
    (lambda m, d: ll.quantize(m, d, "int8-qat", calibrate_method="entropy"), BadOption, "learns its ranges"),
    (lambda m, d: ll.quantize(m, d, "int8-qat", max_drop=0.5), BadOption, "max_drop works with scheme='int8'"),
    (lambda m, d: ll.quantize(m, d, "int8-qat", calibration_samples=1), BadInput, "one sample"),
    (lambda m, d: ll.quantize(m, (d.x[:1], d.y[:1]), "int8"), BadInput, "one sample"),
    (lambda m, d: ll.quantize(m, (d.x[:, :32], d.y), "int8-qat"), BadInput, "cannot take a batch of shape"),
    (lambda m, d: ll.quantize(m, (d.x, d.y + 5), "int8-qat"), BadInput, "labels run 5..14"),
    (lambda m, d: ll.quantize(Branchy(), d, "int8-qat"), BadInput, "data-dependent Python control flow"),
])
def test_what_qat_cannot_do_is_one_line(mlp, digits, call, error, message):
    with pytest.raises(error, match=message) as caught:
        call(mlp, digits)
    one_line(caught)


def test_a_learned_range_rounds_and_differentiates_as_torchs_lsq_does():
    # torch's own LSQ+ fake quantization is the oracle: same values, same gradients for x, scale and zero point
    torch.manual_seed(0)
    x, weights = (3 * torch.randn(200)).requires_grad_(True), torch.randn(200)
    scale, zero = torch.tensor(0.03, requires_grad=True), torch.tensor(100.3, requires_grad=True)
    (learned_rounding(x, scale, zero) * weights).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    scale_ref, zero_ref = torch.tensor([0.03], requires_grad=True), torch.tensor([100.3], requires_grad=True)
    reference = torch._fake_quantize_learnable_per_tensor_affine(x_ref, scale_ref, zero_ref, 0, 255, 1.0)
    (reference * weights).sum().backward()
    np.testing.assert_array_equal(learned_rounding(x, scale, zero).detach(), reference.detach())
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-6)  # (x / scale) · scale: 1 up to float rounding
    assert float(scale.grad) == pytest.approx(float(scale_ref.grad), rel=1e-5)
    assert float(zero.grad) == pytest.approx(float(zero_ref.grad), rel=1e-5)
    assert 0 < (x.grad == 0).sum() < len(x)  # some values clipped, and only those lose their gradient


@pytest.fixture(scope="module")
def glitching_sensor():
    """Is x1 > x2? Input 0 jumps to 16 on 5 % of the samples and carries nothing: min-max keeps
    it in the range, leaving 16 levels for the values that decide."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (1536, 4)).astype(np.float32)
    y = (x[:, 1] > x[:, 2]).astype(np.int64)
    x[:, 0] = 16.0 * (rng.random(len(x)) < 0.05)
    data = ll.data.Dataset(x, y)
    train, test = data.subset(np.arange(1024)), data.subset(np.arange(1024, 1536))
    torch.manual_seed(0)
    model = ll.finetune(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), train, epochs=10, lr=1e-2)
    return model, train, test


def test_qat_learns_to_clip_an_outlier_that_ptqs_range_must_hold(glitching_sensor):
    model, train, test = glitching_sensor
    ptq = ll.quantize(model, train)
    qat = ll.quantize(model, train, "int8-qat", epochs=8, lr=1e-3)
    (ptq_scale, ptq_zero), (qat_scale, qat_zero) = graph_roundings(ptq.model_bytes)["x"], graph_roundings(qat.model_bytes)["x"]
    assert 255 * ptq_scale == pytest.approx(16.0, rel=1e-6) and ptq_zero == 0
    clip = (255 - qat_zero) * qat_scale
    assert clip < 0.7 * 16.0 and qat_scale < 0.7 * ptq_scale  # the glitch is clipped: finer steps for x1 and x2
    assert ops(qat.model_bytes) == ops(ptq.model_bytes)  # still PTQ's graph, node for node
    accuracy = {name: (m.predict(test.x).argmax(1) == test.y).mean() for name, m in (("ptq", ptq), ("qat", qat))}
    assert accuracy["qat"] > accuracy["ptq"] + 0.005, accuracy
