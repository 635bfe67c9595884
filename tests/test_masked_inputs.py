"""masked_inputs: the model inputs of every (sample, coalition), and what a switched-off feature is."""

import numpy as np
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.explain.features import masked_inputs


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal numbers with the same sign of zero (torch.equal calls -0 and +0 equal)."""
    return torch.equal(a, b) and torch.equal(a.signbit(), b.signbit())


def test_masked_inputs():
    x, base = torch.arange(6.0).view(2, 3), -torch.ones(2, 3)
    ids = torch.tensor([0, 1, 1])
    z = torch.tensor([[True, False], [False, True]])
    got = masked_inputs(x, base, ids, z)
    assert torch.equal(got, torch.tensor([[0.0, -1, -1], [-1, 1, 2], [3, -1, -1], [-1, 4, 5]]))


def test_masked_inputs_for_element_features_and_for_a_chunk():
    """ids=None (feature j is element j) and a chunk of rows give the rows the full gather gives."""
    x, base = torch.randn(3, 2, 2), torch.randn(3, 2, 2)
    z = torch.rand(5, 4) > 0.5
    everything = masked_inputs(x, base, torch.arange(4).view(2, 2), z)
    assert torch.equal(masked_inputs(x, base, None, z), everything)
    rows = torch.tensor([0, 7, 14, 3])
    assert torch.equal(masked_inputs(x, base, None, z, rows), everything[rows])


@pytest.mark.parametrize("zero", [True, False])
def test_masked_inputs_of_a_zero_baseline_and_into_a_larger_batch(zero):
    """baseline=None (zeros, masked by a product) gives what a zero baseline gives, the sign of zero
    and chunks included; out= takes every row in place and leaves the rest of a larger batch alone."""
    x, ids, z, rows = torch.randn(3, 2, 2), torch.tensor([[0, 1], [1, 0]]), torch.rand(5, 2) > 0.5, torch.tensor([0, 7, 3])
    base = None if zero else torch.randn(3, 2, 2)
    want = torch.where(z[:, ids][None], x[:, None], torch.zeros(3, 1, 2, 2) if zero else base[:, None]).flatten(0, 1)
    assert same(masked_inputs(x, base, ids, z), want) and same(masked_inputs(x, base, ids, z, rows), want[rows])
    batch = torch.full((2 + 15, 2, 2), 7.0)
    masked_inputs(x, base, ids, z, out=batch[2:])
    assert same(batch[2:], want) and (batch[:2] == 7).all()
    with pytest.raises(ValueError, match="only every row"):
        masked_inputs(x, base, ids, z, rows, out=batch[2:5])


class Angle(nn.Module):
    """A point's polar angle: atan2 tells -0 from +0 (atan2(-0, -1) = -pi, atan2(+0, -1) = +pi)."""

    def forward(self, x):
        angle = torch.atan2(x[:, 1], x[:, 0])
        return torch.stack([angle, -angle], 1)


@pytest.mark.parametrize("method", ["shapley", "kernelshap"])
def test_a_switched_off_feature_is_the_baseline_itself_sign_of_zero_included(method):
    """With the default zero baseline, a feature switched off is +0, as f(baseline) sees it: the
    Shapley values of the angle of (-1, -2) are the hand-computed ones, from f at +0 (at -0 the
    first value would be off by pi)."""
    x = np.array([[-1.0, -2.0]])
    f = lambda a, b: float(np.arctan2(b, a))
    empty, first, second, both = f(0.0, 0.0), f(-1.0, 0.0), f(0.0, -2.0), f(-1.0, -2.0)
    exact = [((first - empty) + (both - second)) / 2, ((second - empty) + (both - first)) / 2]
    got = ll.explain(Angle(), x, method, target=0, seed=0)
    np.testing.assert_allclose(got.values[0], exact, rtol=1e-6)


def test_the_first_batch_is_built_from_x_even_when_x_takes_gradients():
    """game() writes x and the first design's masked inputs into one batch with out=, which refuses a
    tensor that takes gradients: it writes a detached x (no score there is differentiated)."""
    from leanlens.explain.shapley import kernelshap
    from leanlens.explain.targets import Targets
    from leanlens.models.wrap import wrap

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)).eval()
    x = torch.randn(4, 6)
    plain, _ = kernelshap(wrap(net), x, Targets(None, 4), samples=40)
    tracked, _ = kernelshap(wrap(net), x.clone().requires_grad_(), Targets(None, 4), samples=40)
    assert torch.equal(plain, tracked.detach())
