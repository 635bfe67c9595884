"""LIME: exact recovery on linear models, its fit R², determinism, options and `score`."""

import numpy as np
import pytest
import torch
from torch import nn

from leanlens.errors import BadOption
from leanlens.explain import explain
from leanlens.explain.explanation import Explanation
from leanlens.explain.lime import lime_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def linear():
    torch.manual_seed(0)
    return nn.Linear(8, 3).eval()


@pytest.fixture(scope="module")
def tabular():
    return torch.randn(6, 8, generator=torch.Generator().manual_seed(1)).numpy()


def test_lime_recovers_a_linear_model(linear, tabular):
    """With a zero baseline f(z) = b + sum_j z_j w_j x_j, so the coefficients are w_j x_j."""
    exp = explain(linear, tabular, "lime", target=2)
    want = linear.weight[2].detach().numpy() * tabular
    np.testing.assert_allclose(exp.values, want, rtol=0, atol=1e-4 * np.abs(want).max())
    assert exp.score.shape == (len(tabular),)
    np.testing.assert_allclose(exp.score, 1, atol=1e-6)


def test_lime_on_a_nonlinear_model_reports_a_partial_fit(tabular):
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)).eval()
    first = explain(net, tabular, "lime", target=0, samples=400, seed=3)
    assert np.all((first.score > 0) & (first.score <= 1)) and first.score.min() < 0.999
    again = explain(net, tabular, "lime", target=0, samples=400, seed=3)
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_array_equal(first.score, again.score)
    other = explain(net, tabular, "lime", target=0, samples=400, seed=4)
    assert np.abs(first.values - other.values).max() > 1e-5


def test_lime_superpixels_spread_one_coefficient_a_cell(resnet, images):
    exp = explain(resnet, images[:2], "lime", target=0, superpixel=8, samples=300)
    v = exp.values[:, 0]
    assert exp.values.shape == images[:2].shape
    assert np.all(v[:, 8:16, 16:24] == v[:, 8:9, 16:17]) and len(np.unique(v[0])) == 16
    assert np.all((exp.score > 0) & (exp.score <= 1))


def test_lime_kernel_weights():
    z = torch.tensor([[True] * 4, [True, True, False, False], [False] * 4])
    w = lime_weights(z, 0.25)
    np.testing.assert_allclose(w.numpy(), np.exp(-np.array([0, 1 - np.sqrt(0.5), 1]) ** 2 / 0.0625))


def test_lime_options_are_checked(linear, tabular):
    with pytest.raises(BadOption, match="kernel_width"):
        explain(linear, tabular, "lime", kernel_width=0)
    with pytest.raises(BadOption, match="alpha"):
        explain(linear, tabular, "lime", alpha=-1.0)
    with pytest.raises(BadOption, match="samples"):
        explain(linear, tabular, "lime", samples=2.5)


def test_score_survives_npz(linear, tabular, tmp_path):
    exp = explain(linear, tabular, "lime", target=1, samples=200)
    back = Explanation.from_npz(exp.to_npz(tmp_path / "lime"))
    np.testing.assert_array_equal(back.score, exp.score)
    np.testing.assert_array_equal(back.values, exp.values)
    plain = Explanation.from_npz(explain(linear, tabular, "saliency").to_npz(tmp_path / "plain"))
    assert plain.score is None
