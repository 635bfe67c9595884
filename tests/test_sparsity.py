"""Unstructured pruning: real zeros, the sparsity reported as counted, bins scored by contribution."""

import numpy as np
import pytest
import torch
from errors_support import one_line
from torch import nn

from leanlens.compression.sparsity import sparsify
from leanlens.data import Dataset
from leanlens.errors import BadInput, BadOption, UnknownMethod

RNG = np.random.default_rng(0)


def three_kinds_of_input():
    """A linear classifier over 30 inputs: 10 large inputs on tiny weights (they decide), 10 unit
    inputs on large weights (they decide too), and 10 inputs that are always zero, on medium
    weights (they never contribute). Magnitude must zero the tiny weights; contribution must not."""
    x = np.concatenate([100 * RNG.normal(size=(256, 10)), RNG.normal(size=(256, 10)), np.zeros((256, 10))], 1)
    w = np.concatenate([RNG.uniform(-0.01, 0.01, (3, 10)),
                        RNG.choice([-1, 1], (3, 10)) * RNG.uniform(0.3, 1.0, (3, 10)),
                        RNG.choice([-1, 1], (3, 10)) * RNG.uniform(0.1, 0.2, (3, 10))], 1)
    model = nn.Linear(30, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
    x = x.astype(np.float32)
    y = (x @ w.T).argmax(1)
    return model, Dataset(x, y)


def accuracy(model, data):
    with torch.no_grad():
        return float((model(torch.as_tensor(data.x)).argmax(1).numpy() == data.y).mean())


def test_binned_zeros_what_never_contributes_and_magnitude_zeros_what_decides():
    model, data = three_kinds_of_input()
    before = model.weight.detach().clone()
    binned = sparsify(model, data, sparsity=1 / 3, scheme="binned", bins=32)
    magnitude = sparsify(model, data, sparsity=1 / 3, scheme="magnitude")
    kept = binned.model.module.weight.detach()
    assert torch.all(kept[:, 20:] == 0) and torch.all(kept[:, :20] != 0)  # exactly the dead inputs' bins
    assert accuracy(binned.model.module, data) == 1.0
    assert torch.all(magnitude.model.module.weight.detach()[:, :10] == 0)
    assert accuracy(magnitude.model.module, data) < 0.8
    assert binned.sparsity == pytest.approx(1 / 3) and magnitude.sparsity == pytest.approx(1 / 3)
    assert torch.equal(model.weight.detach(), before)  # the input model is not changed


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


@pytest.mark.parametrize("scheme", ["binned", "magnitude"])
@pytest.mark.parametrize("target", [0.3, 0.7])
def test_the_reported_sparsity_is_the_counted_share_of_zeros(scheme, target):
    model = small_cnn()
    data = Dataset(RNG.normal(size=(40, 1, 10, 10)).astype(np.float32), RNG.integers(0, 4, 40))
    result = sparsify(model, data, sparsity=target, scheme=scheme, bins=16, protect=["6"], batch_size=16)
    module = result.model.module
    weights = [module[0].weight, module[2].weight]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert result.sparsity == zeros / total
    assert set(result.layers) == {"0", "2"} and torch.all(module[6].weight != 0)  # the protected head is dense
    assert result.sparsity >= target
    if scheme == "magnitude":
        assert zeros == int(np.ceil(target * total))
    assert [tuple(p.shape) for p in module.parameters()] == [tuple(p.shape) for p in model.parameters()]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"sparsity": 1.0}, BadOption, "sparsity=1.0"),
    ({"scheme": "binnned"}, UnknownMethod, "binnned"),
    ({"bins": 1}, BadOption, "bins=1"),
    ({"protect": ["nope"]}, BadOption, "'nope', which is not a layer"),
    ({"protect": ["0", "2", "6"]}, BadOption, "no Linear or convolution layer"),
])
def test_bad_options_are_one_line(kwargs, error, message):
    data = Dataset(RNG.normal(size=(8, 1, 10, 10)).astype(np.float32), RNG.integers(0, 4, 8))
    with pytest.raises(error, match=message) as raised:
        sparsify(small_cnn(), data, **kwargs)
    one_line(raised)


def test_labels_the_model_cannot_have_are_one_line():
    data = Dataset(RNG.normal(size=(8, 1, 10, 10)).astype(np.float32), np.full(8, 7))
    with pytest.raises(BadInput, match="labels run 7..7 but the model has 4 classes") as raised:
        sparsify(small_cnn(), data)
    one_line(raised)
