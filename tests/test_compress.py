"""Pruning really removes channels, scored by each criterion as it claims; int8 really runs integer kernels."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.audit.profile import serialized_bytes
from leanlens.compression import surgery
from leanlens.compression.criteria import scorer
from leanlens.errors import BadInput, BadOption, UnknownMethod
from leanlens.models import OnnxModel, SmallResNet, TorchModel


@pytest.fixture(scope="module")
def lesion_data():
    return ll.data.load("lesions", n=2000, seed=1).split(0.25, seed=1)


@pytest.fixture(scope="module")
def trained(lesion_data):
    train, _ = lesion_data
    torch.manual_seed(0)
    model = ll.finetune(SmallResNet(width=16), train, epochs=2.0, lr=3e-3)
    return model


def conv_widths(module: nn.Module) -> dict[str, int]:
    return {name: m.out_channels for name, m in module.named_modules() if isinstance(m, nn.Conv2d)}


def test_prune_removes_channels_and_keeps_the_input(trained, lesion_data):
    train, test = lesion_data
    before = {k: v.clone() for k, v in trained.module.state_dict().items()}
    small = ll.prune(trained, train, ratio=0.5, criterion="taylor", round_to=8)
    dense_widths, pruned_widths = conv_widths(trained.module), conv_widths(small.module)
    assert all(pruned_widths[k] == dense_widths[k] // 2 for k in dense_widths)
    assert all(w % 8 == 0 for w in pruned_widths.values())
    assert small.module.head.out_features == 2  # classes are never pruned
    dense_params = sum(p.numel() for p in trained.module.parameters())
    assert sum(p.numel() for p in small.module.parameters()) <= 0.5 * dense_params
    assert small.predict(test.x).shape == (len(test), 2)
    after = trained.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_taylor_keeps_the_channels_the_loss_depends_on(lesion_data):
    # A model whose output uses only the first 4 of 8 stem channels: Taylor scores of the
    # unused ones are exactly zero, so those are the ones removed.
    train, _ = lesion_data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        model[4].weight[:, 4:] = 0
    small = ll.prune(model, train, ratio=0.5, criterion="taylor", round_to=None)
    kept = small.module[0].weight.detach()
    original = model[0].weight.detach()[:4]
    assert kept.shape[0] == 4 and torch.equal(kept, original)


def test_prune_refuses_bad_options(trained, lesion_data):
    train, _ = lesion_data
    with pytest.raises(BadOption, match="ratio"):
        ll.prune(trained, train, ratio=1.5)
    with pytest.raises(UnknownMethod, match="did you mean 'taylor'"):
        ll.prune(trained, train, criterion="tailor")


@pytest.fixture(scope="module")
def int8(trained, lesion_data):
    train, _ = lesion_data
    return ll.quantize(trained, train, scheme="int8")


def test_int8_model_runs_integer_kernels(int8, tmp_path):
    assert isinstance(int8, OnnxModel)
    graph = onnx.load_from_string(int8.model_bytes).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == 8  # every one of SmallResNet's 8 convs stores int8 weights
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(int8.model_bytes, options, providers=["CPUExecutionProvider"])
    ops = Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)
    assert ops["QLinearConv"] == 8 and ops["Conv"] == 0  # fused into integer convolutions
    assert ops["QLinearAdd"] == 3  # the residual additions too


def test_int8_model_is_small_and_agrees(int8, trained, lesion_data):
    _, test = lesion_data
    assert (trained.predict(test.x).argmax(1) == test.y).mean() >= 0.9  # a model worth agreeing with
    assert serialized_bytes(int8) <= 0.35 * serialized_bytes(trained)
    reference, quantized = trained.predict(test.x).argmax(1), int8.predict(test.x).argmax(1)
    assert (reference == quantized).mean() >= 0.97


def test_int8_twin_simulates_the_deployed_model(int8, trained, lesion_data):
    # Gradient explanations of the int8 model run on its twin: it must compute what ORT computes,
    # and do so better than the float model it came from (whose scores ORT rounds to uint8 steps).
    _, test = lesion_data
    deployed, twin, fp32 = int8.predict(test.x), int8.twin.predict(test.x), trained.predict(test.x)
    twin_error, fp32_error = np.abs(deployed - twin), np.abs(deployed - fp32)
    score_step = int8.twin.module.head.output[0]  # ORT stores the class scores in uint8 steps of this size
    assert fp32_error.mean() > 0.25 * score_step  # the int8 rounding matters here
    assert twin_error.mean() < 0.6 * fp32_error.mean()
    assert (twin_error < 1e-6).mean() >= 0.5  # most scores land on ORT's exact uint8 level
    assert twin_error.max() <= 1.01 * score_step  # the rest one rounding step away at most
    assert (deployed.argmax(1) == twin.argmax(1)).mean() >= 0.99
    assert int8.capabilities >= {"gradients", "layers"}


def test_int8_twin_explains_like_the_float_model_but_not_identically(int8, trained, lesion_data):
    # Independent of the twin's construction: Grad-CAM++ of the float model it was quantized
    # from. A twin with layers matched to the wrong int8 weights or scales decorrelates from
    # it; one that silently ran the float model would equal it.
    _, test = lesion_data
    ours = ll.explain(int8, test.x[:16], method="gradcam++", layer="stage3.relu2").values
    float_maps = ll.explain(trained, test.x[:16], method="gradcam++", layer="stage3.relu2").values
    correlation = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours, float_maps)]
    assert min(correlation) >= 0.95
    assert np.abs(ours - float_maps).max() > 1e-3 * np.abs(float_maps).max()


def test_quantize_refuses_unknown_scheme_and_non_torch(trained, int8, lesion_data):
    train, _ = lesion_data
    with pytest.raises(UnknownMethod, match="int8"):
        ll.quantize(trained, train, scheme="int9")
    with pytest.raises(BadInput, match="PyTorch"):
        ll.quantize(int8, train)


def test_onnx_model_refuses_a_corrupt_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(BadInput, match="ONNX Runtime cannot load"):
        ll.wrap(str(path))
    with pytest.raises(BadInput, match="no ONNX file"):
        ll.wrap(str(tmp_path / "missing.onnx"))


def test_finetune_learns_and_copies(lesion_data):
    train, test = lesion_data
    torch.manual_seed(0)
    start = TorchModel(SmallResNet(width=8))
    before = [p.clone() for p in start.module.parameters()]
    trained = ll.finetune(start, train, epochs=3.0, lr=3e-3)
    assert (trained.predict(test.x).argmax(1) == test.y).mean() >= 0.9
    assert all(torch.equal(a, b) for a, b in zip(before, start.module.parameters()))


def batches(x: np.ndarray, y: np.ndarray):
    return [(torch.as_tensor(x), torch.as_tensor(y))]


@pytest.fixture(scope="module")
def digits_like():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 1, 8, 8)).astype(np.float32), np.arange(64) % 3


def group_scores(module: nn.Module, layer: nn.Module, score, example: torch.Tensor) -> torch.Tensor:
    graph = surgery.dependency_graph(module, example)
    for group in graph.get_all_groups(root_module_types=surgery.ROOTS):
        if group[0].dep.target.module is layer:
            return score(group)
    raise AssertionError("no group rooted at the layer")


def decoy_model() -> nn.Sequential:
    """conv0's channel 0 has weights 100x the others but conv1 reads it with zero weights:
    magnitude must rank it first, activation x gradient last (its gradient is exactly 0)."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    with torch.no_grad():
        module[0].weight[0] *= 100
        module[0].bias[0] = 1.0  # ReLU keeps it alive: the activation is large, only the gradient is 0
        module[2].weight[:, 0] = 0
    return module.eval()


def test_attribution_and_magnitude_disagree_on_a_decoy_channel(digits_like):
    x, y = digits_like
    module = decoy_model()
    example = torch.as_tensor(x[:1])
    by_magnitude = group_scores(module, module[0], scorer("magnitude", module, []), example)
    by_attribution = group_scores(module, module[0], scorer("attribution", module, batches(x, y)), example)
    assert int(by_magnitude.argmax()) == 0
    assert int(by_attribution.argmin()) == 0 and float(by_attribution[0]) == 0.0
    assert float(by_attribution[1:].min()) > 0.0


def test_attribution_is_mean_abs_activation_times_gradient(digits_like):
    # The oracle, by hand: hooks-free autograd on conv2's output for the true classes.
    x, y = digits_like
    module = decoy_model()
    inputs = torch.as_tensor(x)
    hidden = module[:3](inputs)
    scores = module[3:](hidden)
    (grad,) = torch.autograd.grad(scores.gather(1, torch.as_tensor(y)[:, None]).sum(), hidden)
    expected = (hidden * grad).abs().mean(dim=(0, 2, 3))
    got = group_scores(module, module[2], scorer("attribution", module, batches(x, y)), inputs[:1])
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-7)


def test_taylor_scores_a_zeroed_channel_lowest(digits_like):
    x, y = digits_like
    module = decoy_model()
    with torch.no_grad():
        module[2].weight[3] = 0  # conv1's channel 3 computes nothing but its bias
        module[2].bias[3] = 0
    scores = group_scores(module, module[2], scorer("taylor", module, batches(x, y)), torch.as_tensor(x[:1]))
    assert int(scores.argmin()) == 3 and float(scores[3]) == 0.0
    assert float(torch.sort(scores).values[1]) > 0.0  # the others carry loss


def test_random_criterion_repeats_with_its_seed_only(digits_like):
    x, _ = digits_like
    module = decoy_model()
    example = torch.as_tensor(x[:1])
    first, again, other = (group_scores(module, module[2], scorer("random", module, [], seed), example) for seed in (1, 1, 2))
    assert torch.equal(first, again) and not torch.equal(first, other)


class ConvHead(nn.Module):
    """A 1x1-conv head before global pooling: its 5 outputs are the classes, and nothing about
    the number 5 marks it (no Linear, no other layer of width 5)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.classify = nn.Conv2d(16, 5, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.classify(self.body(x))).flatten(1)


class TwoHeads(nn.Module):
    """Two Linear heads whose scores are added: both produce the output."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.left, self.right = nn.Linear(16, 4), nn.Linear(16, 4)

    def forward(self, x):
        hidden = self.features(x)
        return self.left(hidden) + self.right(hidden)


@pytest.mark.parametrize(("model", "heads"), [(ConvHead, ["classify"]), (TwoHeads, ["left", "right"])])
def test_output_layers_are_found_by_structure(model, heads):
    module = model()
    graph = surgery.dependency_graph(module, torch.zeros(1, 1, 8, 8))
    names = {layer: name for name, layer in module.named_modules()}
    assert sorted(names[layer] for layer in surgery.output_layers(graph)) == heads


def test_prune_keeps_a_conv_head_and_protected_layers():
    torch.manual_seed(0)
    x = np.random.default_rng(1).normal(size=(20, 1, 8, 8)).astype(np.float32)
    small = ll.prune(ConvHead(), (x, np.arange(20) % 5), ratio=0.5, criterion="magnitude", round_to=None,
                     protect=["body.0"])
    assert small.module.classify.out_channels == 5
    assert small.module.body[0].out_channels == 16  # protected by name
    assert small.module.body[3].out_channels == 8  # the one layer left to prune
    assert small.predict(x).shape == (20, 5)


def test_protect_names_a_layer_the_model_has():
    x = np.zeros((6, 1, 8, 8), np.float32)
    with pytest.raises(BadOption, match=r"'body\.9'.*did you mean"):
        ll.prune(ConvHead(), (x, np.arange(6) % 5), protect=["body.9"])
