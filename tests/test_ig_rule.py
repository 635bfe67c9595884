"""IG's refinement rule for `tol`: 'auto' reads a piecewise-linear net off its autograd graph."""

import numpy as np
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.explain import Explanation
from leanlens.explain.linearity import piecewise_linear
from leanlens.models import SmallResNet

pytestmark = pytest.mark.usefixtures("one_thread")


class Power(nn.Module):
    def forward(self, x):
        return torch.stack([(x * x).sum(1), x.sum(1)], 1)


class Reciprocal(nn.Module):
    def forward(self, x):
        return torch.stack([2 / (x.sum(1) ** 2 + 1), x.sum(1) / 2], 1)


class Elementwise(nn.Module):
    """A ReLU net written with functional calls and a max over two of its own branches."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(4, 6)

    def forward(self, x):
        return torch.maximum(torch.relu(self.a(x)), self.b(x).clamp(min=-1)).view(len(x), 3, 2).mean(1)


def graph_of(net, x):
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net(x.clone().requires_grad_(True))


IMAGE, ROW = (2, 1, 16, 16), (2, 4)


@pytest.mark.parametrize("net, shape, linear", [
    (SmallResNet(width=4), IMAGE, True),  # convs, eval batch norms, ReLUs, residual adds, pooling
    (Elementwise(), ROW, True),
    (nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 2)), ROW, False),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.InstanceNorm2d(4), nn.ReLU(), nn.Flatten()), IMAGE, False),  # x's own spread
    (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Softmax(-1)), ROW, False),
    (Power(), ROW, False),  # x * x: both factors depend on x
    (Reciprocal(), ROW, False),  # a division by x
])
def test_piecewise_linear_nets_are_told_from_smooth_ones(net, shape, linear):
    assert piecewise_linear(graph_of(net, torch.rand(shape))) is linear


def test_scores_without_a_graph_count_as_smooth():
    assert piecewise_linear(torch.ones(2, 2)) is False  # a Keras model's scores: Clenshaw-Curtis, the safe side


def test_the_trapezoid_is_the_better_rule_per_feature_on_a_relu_net():
    """Why 'auto' takes the trapezoid on piecewise-linear nets: at equal points its per-feature error
    is below Clenshaw-Curtis' (the integrand is piecewise constant; CC's middle gaps are wider)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)).double().eval()
    x = torch.randn(16, 8, dtype=torch.float64) * 2
    exact = ll.explain(net, x, "ig", steps=8192, rule="riemann_middle", target=0).values
    for points in (17, 33):
        error = {rule: np.abs(ll.explain(net, x, "ig", tol=1e-12, max_steps=points, rule=rule, target=0).values
                              - exact).sum() for rule in ("riemann_trapezoid", "clenshaw_curtis")}
        assert error["riemann_trapezoid"] < error["clenshaw_curtis"], (points, error)


def test_auto_picks_the_rule_from_the_model_and_says_which():
    torch.manual_seed(0)
    relu = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2)).double().eval()
    tanh = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 2)).double().eval()
    x = torch.randn(5, 6, dtype=torch.float64)
    got = {name: ll.explain(net, x, "ig", tol=1e-4, target=0) for name, net in (("relu", relu), ("tanh", tanh))}
    assert got["relu"].options["rule"] == "riemann_trapezoid"
    assert got["tanh"].options["rule"] == "clenshaw_curtis"
    for name, net in (("relu", relu), ("tanh", tanh)):  # 'auto' is exactly the rule it names
        named = ll.explain(net, x, "ig", tol=1e-4, target=0, rule=got[name].options["rule"])
        np.testing.assert_array_equal(named.values, got[name].values)
        np.testing.assert_array_equal(named.error.evaluations, got[name].error.evaluations)
    chosen = ll.explain(relu, x, "ig", tol=1e-4, target=0, rule="romberg")
    assert chosen.options["rule"] == "romberg"  # a rule asked for by name is kept
    assert ll.explain(relu, x, "ig", steps=8, target=0).options["rule"] == "gausslegendre"  # fixed steps' default


def test_the_ends_of_the_path_are_not_taken_on_the_kinks():
    """A bias-free ReLU net is positively homogeneous: f(a x) = a f(x), so its gradient along the path
    from 0 is constant and two points integrate it exactly. At the baseline 0 itself every unit sits on
    its kink, where torch's ReLU gradient is 0: a rule weighing that point would be off by h/2 of the gap."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 32, bias=False), nn.ReLU(), nn.Linear(32, 2, bias=False)).double().eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    got = ll.explain(net, x, "ig", tol=1e-9, target=0)
    assert got.options["rule"] == "riemann_trapezoid" and got.error.met.all()
    assert (got.error.evaluations == 3).all()  # met at the first check
    np.testing.assert_allclose(got.values, ll.explain(net, x, "ig", steps=16, target=0).values, atol=1e-6)


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh])
def test_the_last_refinement_s_change_estimates_each_value_s_error(activation, tmp_path):
    """Completeness is a sum whose terms cancel on a ReLU net (< 1 % of the gap while single values are off
    by up to 8 % here); `error.change`, what the last refinement moved the values, is the per-feature
    estimate: not below 0.9x the real per-feature error on any sample here (0.98x at worst), and on a
    ReLU net within a few times of it (median 2.6x)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 64), activation(), nn.Linear(64, 64), activation(), nn.Linear(64, 2))
    net = net.double().eval()
    x = torch.randn(16, 8, dtype=torch.float64) * 2
    exact = ll.explain(net, x, "ig", steps=8192, rule="riemann_middle", target=0).values
    got = ll.explain(net, x, "ig", tol=1e-2, target=0)
    real = np.abs(got.values - exact).sum(1) / np.abs(exact).sum(1)
    assert (got.error.change >= 0.9 * real).all(), got.error.change / real
    if activation is nn.ReLU:
        assert got.error.relative.max() <= 1e-2 and real.max() > 5e-2  # the sum hides what single values miss
        assert np.median(got.error.change / real) < 4  # cautious, not vacuous
    assert "the last refinement moved the values by" in str(got.error)
    back = Explanation.from_npz(got.to_npz(tmp_path / "ig"))
    np.testing.assert_array_equal(back.error.change, got.error.change)
    assert ll.explain(net, x, "ig", steps=16, target=0).error.change is None  # fixed steps: no refinement to read


def test_a_refining_rule_without_tol_says_so():
    from errors_support import one_line

    from leanlens.errors import BadOption

    net = nn.Sequential(nn.Linear(4, 2)).eval()
    for rule in ("auto", "clenshaw_curtis"):
        with pytest.raises(BadOption) as error:
            ll.explain(net, torch.rand(2, 4), "ig", rule=rule, target=0)
        assert f"rule={rule!r} refines to a tolerance and needs tol=" in one_line(error)


def test_feature_tol_refines_until_single_values_settle(tmp_path):
    """On a ReLU net the sum meets tol 1e-2 while a value set is off by 8 %; feature_tol=0.02 refines until
    the last refinement moves the values by <= 2 %, and then each sample's per-feature error is within it."""
    from errors_support import one_line

    from leanlens.errors import BadOption

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)).double().eval()
    x = torch.randn(16, 8, dtype=torch.float64) * 2
    exact = ll.explain(net, x, "ig", steps=8192, rule="riemann_middle", target=0).values
    real = lambda e: np.abs(e.values - exact).sum(1) / np.abs(exact).sum(1)
    loose = ll.explain(net, x, "ig", tol=1e-2, target=0)
    tight = ll.explain(net, x, "ig", tol=1e-2, feature_tol=0.02, target=0)
    assert real(loose).max() > 0.05 and tight.error.met.all() and (tight.error.change <= 0.02).all()
    assert real(tight).max() <= 0.02
    assert tight.error.evaluations.sum() > loose.error.evaluations.sum()  # the points it took
    assert "feature_tol 0.02" in str(tight.error)
    assert Explanation.from_npz(tight.to_npz(tmp_path / "ig")).error.feature_tol == 0.02
    for options, message in (({"feature_tol": 0.02}, "feature_tol without tol"),
                             ({"tol": 1e-2, "feature_tol": 0}, "feature_tol=0")):
        with pytest.raises(BadOption) as error:
            ll.explain(net, x, "ig", target=0, **options)
        assert message in one_line(error)


def test_completeness_is_summed_in_float64():
    """A float32 sum of 2^24 + 1 + 1 drops both ones; the delta the stopping rule reads must not (on a smooth
    net a float32 sum over 4096 values moved the delta by 1e-7 of the gap, what 33 points leave)."""
    from leanlens.explain.ig_path import completeness_delta

    values = torch.tensor([[2.0**24, 1.0, 1.0]])
    assert values.sum().item() == 2.0**24  # what the float32 sum gave
    assert completeness_delta(values, torch.tensor([2.0**24])).item() == 2.0
