"""Bad input to prune / quantize / finetune: one-line errors, right results, the user's model untouched."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

import leanlens as ll
from leanlens.errors import BadInput, BadOption, LeanlensError
from leanlens.models import SmallResNet


def small_cnn(frozen: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
    )
    for parameter in module.parameters():
        parameter.requires_grad_(not frozen)
    return module


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(48, 1, 8, 8)).astype(np.float32), np.arange(48) % 3


def snapshot(module: nn.Module) -> tuple:
    return ({k: v.clone() for k, v in module.state_dict().items()},
            [m.training for m in module.modules()], [p.requires_grad for p in module.parameters()])


def assert_unchanged(module: nn.Module, before: tuple) -> None:
    state, training, trainable = snapshot(module)
    assert state.keys() == before[0].keys() and all(torch.equal(state[k], before[0][k]) for k in state)
    assert training == before[1] and trainable == before[2]


def refused(error_type, call, match: str) -> None:
    with pytest.raises(error_type, match=match) as caught:
        call()
    assert isinstance(caught.value, LeanlensError) and "\n" not in str(caught.value) and "hint:" in str(caught.value)


def test_quantize_leaves_every_submodule_train_flag_and_requires_grad(data):
    module = small_cnn().train()
    module[1].eval()  # a frozen norm inside a training model
    module[0].weight.requires_grad_(False)
    before = snapshot(module)
    ll.quantize(module, data, calibration_samples=16)
    assert_unchanged(module, before)


def test_quantize_calibrates_on_the_first_samples_only(data):
    # Min/max calibration: the input's uint8 scale is the range of exactly the samples used.
    x, y = data
    x = np.abs(x)
    x[20:] *= 10  # later samples would widen the range
    q = ll.quantize(small_cnn(), (x, y), calibration_samples=20)
    graph = onnx.load_from_string(q.model_bytes).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    first = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    assert float(constants[first.input[1]]) == pytest.approx(x[:20].max() / 255, rel=1e-5)


@pytest.mark.parametrize("count", [0, -12, 2.5, True, "256"])
def test_quantize_refuses_a_calibration_count_that_is_not_positive(data, count):
    module = small_cnn()
    before = snapshot(module)
    refused(BadOption, lambda: ll.quantize(module, data, calibration_samples=count), "calibration_samples")
    assert_unchanged(module, before)


@pytest.mark.parametrize("verb", ["quantize", "prune", "finetune"])
def test_complex_inputs_are_refused_not_cast(data, verb):
    x, y = data
    module = small_cnn()
    before = snapshot(module)
    refused(BadInput, lambda: getattr(ll, verb)(module, (x + 1j * x, y)), "complex")
    refused(BadInput, lambda: getattr(ll, verb)(module, (torch.as_tensor(x + 1j * x), torch.as_tensor(y))), "complex")
    assert_unchanged(module, before)


def test_prune_that_would_remove_nothing_names_the_narrowest_layer(data):
    module = small_cnn()
    before = snapshot(module)
    # 8 and 16 channels rounded to multiples of 32 keep every channel.
    refused(BadOption, lambda: ll.prune(module, data, ratio=0.5, round_to=32), r"'0' has 8.*round_to")
    assert_unchanged(module, before)
    assert ll.prune(module, data, ratio=0.5, round_to=4).module[0].out_channels == 4


@pytest.mark.parametrize("verb", ["prune", "finetune"])
@pytest.mark.parametrize("bad_label", [3, -1])
def test_labels_outside_the_model_classes_are_refused(data, verb, bad_label):
    x, y = data
    y = y.copy()
    y[5] = bad_label
    module = small_cnn()
    before = snapshot(module)
    refused(BadInput, lambda: getattr(ll, verb)(module, (x, y)), "3 classes")
    assert_unchanged(module, before)


def test_prune_scores_a_frozen_model_and_keeps_it_frozen(data):
    module = small_cnn(frozen=True)
    before = snapshot(module)
    small = ll.prune(module, data, ratio=0.5, criterion="taylor", round_to=None)
    assert small.module[3].out_channels == 8
    assert not any(p.requires_grad for p in small.module.parameters())
    assert_unchanged(module, before)


def test_finetune_trains_a_copy_of_a_frozen_model(data):
    module = small_cnn(frozen=True)
    before = snapshot(module)
    trained = ll.finetune(module, data, epochs=1.0, lr=1e-2)
    assert not torch.equal(trained.module[0].weight, module[0].weight)
    assert_unchanged(module, before)


@pytest.mark.parametrize("ratio", ["half", True, math.nan, 0, 1.0, None])
def test_prune_refuses_a_ratio_that_is_not_a_fraction(data, ratio):
    module = small_cnn()
    before = snapshot(module)
    refused(BadOption, lambda: ll.prune(module, data, ratio=ratio), "ratio")
    assert_unchanged(module, before)


@pytest.mark.parametrize("option", [{"epochs": "two"}, {"lr": -1.0}, {"epochs": math.inf}])
def test_finetune_refuses_bad_numbers(data, option):
    refused(BadOption, lambda: ll.finetune(small_cnn(), data, **option), next(iter(option)))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 16, batch_first=True)
        self.hidden = nn.Linear(16, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        sequence, _ = self.lstm(x)
        return self.out(torch.relu(self.hidden(sequence[:, -1])))


def test_prune_refuses_an_lstm_in_one_line(data):
    _, y = data
    module = Recurrent()
    before = snapshot(module)
    x = np.random.default_rng(0).normal(size=(48, 5, 4)).astype(np.float32)
    refused(BadInput, lambda: ll.prune(module, (x, y), ratio=0.5, round_to=None), "LSTM layer 'lstm'")
    assert_unchanged(module, before)


class _Pair(nn.Module):
    """A Hugging Face-style model: a dict of outputs."""

    def __init__(self):
        super().__init__()
        self.net = SmallResNet(width=8)

    def forward(self, x):
        return {"logits": self.net(x)}


@pytest.mark.parametrize("compress", ["prune", "quantize", "finetune"])
def test_a_wrong_channel_count_or_a_dict_output_is_one_line(compress):
    x = np.random.default_rng(0).random((8, 3, 64, 64), dtype=np.float32)  # the model takes 1 channel
    y = np.arange(8) % 2
    run = {"prune": lambda m, d: ll.prune(m, d, ratio=0.5), "quantize": ll.quantize,
           "finetune": lambda m, d: ll.finetune(m, d, epochs=1)}[compress]
    with pytest.raises(BadInput, match="cannot take a batch of shape") as error:
        run(SmallResNet(width=8), (x, y))
    assert "\n" not in str(error.value)
    with pytest.raises(BadInput, match="returns a dict, not a tensor") as error:
        run(_Pair(), (x[:, :1], y))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("verb", ["prune", "compress"])
def test_a_grouped_conv_is_refused_in_one_line(data, verb):
    module = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    before = snapshot(module)
    run = {"prune": lambda: ll.prune(module, data, round_to=None),
           "compress": lambda: ll.compress(module, data, budget="macs=0.5", round_to=None)}[verb]
    refused(BadInput, run, r"grouped conv '2' \(groups=2\)")
    assert_unchanged(module, before)
