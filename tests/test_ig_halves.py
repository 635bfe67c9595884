"""The trapezoid's levels in two halves: the cells where the integrand steps most are halved first."""

import numpy as np
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.explain.ig_path import (
    Path,
    cells_to_split,
    nested_weights,
    split_trapezoid_weights,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_split_weights_are_the_trapezoid_on_the_cells_taken():
    cells = 8
    every = split_trapezoid_weights(torch.ones(1, cells, dtype=torch.bool))[0]
    torch.testing.assert_close(every, nested_weights("riemann_trapezoid", 4), rtol=0, atol=0)  # the next level
    none = split_trapezoid_weights(torch.zeros(1, cells, dtype=torch.bool))[0]
    torch.testing.assert_close(none[0::2], nested_weights("riemann_trapezoid", 3), rtol=0, atol=0)  # this level
    assert (none[1::2] == 0).all()
    some = torch.rand(20, cells, generator=torch.Generator().manual_seed(0)) < 0.5
    weights = split_trapezoid_weights(some)
    t = torch.arange(2 * cells + 1, dtype=torch.float64) / (2 * cells)
    torch.testing.assert_close(weights.sum(1), torch.ones(20, dtype=torch.float64))
    torch.testing.assert_close(weights @ (3 * t - 1), torch.full((20,), 0.5, dtype=torch.float64))  # exact on lines
    assert (weights[:, 1::2] > 0).eq(some).all()  # a midpoint weighs only where its cell was halved


def test_the_busiest_half_is_the_cells_whose_values_vary_most():
    x = torch.tensor([[1.0, -2.0], [0.5, 1.0]])
    path = Path(None, x, torch.zeros_like(x), torch.zeros(2, dtype=torch.long), False, False, 8)
    grads = torch.zeros(2, 9, 2)  # level 3's positions: level 2's 5 points at the even ones, 4 cells
    grads[0, 6:, 1] = 1.0  # sample 0: feature 1 (|x| = 2) steps inside cell 2, feature 0 (|x| = 1) inside cell 0
    grads[0, 2:, 0] = 1.5
    grads[1, 4:, 0] = 1.0  # sample 1: a step inside cell 1, a smaller one inside cell 3
    grads[1, 8:, 1] = 0.25
    split = torch.zeros(2, 4, dtype=torch.bool)
    busiest = cells_to_split(path, torch.arange(2), grads, split, "busiest")
    assert busiest.tolist() == [[0, 2], [1, 3]]
    split[torch.arange(2)[:, None], busiest] = True
    assert cells_to_split(path, torch.arange(2), grads, split, "rest").tolist() == [[1, 3], [0, 2]]


def staircase(kinks: np.ndarray) -> nn.Module:
    """f(z) = sum_j a_j relu(z - t_j): along the path from 0 to x its derivative steps at z = t_j only."""
    net = nn.Sequential(nn.Linear(1, len(kinks)), nn.ReLU(), nn.Linear(len(kinks), 1)).double().eval()
    net[0].weight.data.fill_(1.0)
    net[0].bias.data = -torch.as_tensor(kinks)
    net[2].weight.data = torch.linspace(0.5, 2.0, len(kinks), dtype=torch.float64)[None]
    return net


@pytest.mark.parametrize("tol", [3e-3, 1e-3, 3e-4, 1e-4])
def test_a_path_that_steps_in_one_quarter_stops_between_levels(tol):
    """With every step in the first quarter of the path, the busiest half of a level's cells holds all
    of them: it gives the whole level's values for 3/4 of the points, so no sample ever needs a whole
    level (9, 17, 33, ... points) and each stops at a half level, within tol, with those values."""
    kinks = np.random.default_rng(0).uniform(0.01, 0.18, 25)
    net, x = staircase(kinks), torch.tensor([[0.8], [1.0], [1.2]], dtype=torch.float64)
    got = ll.explain(net, x, "ig", tol=tol, target=0, max_steps=1025)
    assert got.options["rule"] == "riemann_trapezoid" and got.error.met.all()
    assert (got.error.relative <= tol).all()
    counts = got.error.evaluations
    assert not np.isin(counts, 2 ** np.arange(3, 11) + 1).any(), counts
    halves = counts[counts > 5]
    assert len(halves) and np.isin(halves, 3 * 2 ** np.arange(1, 9) + 1).all(), counts  # 7, 13, 25, 49, ...
    for sample, points in enumerate(counts):
        whole = 2 ** int(np.ceil(np.log2(points - 1))) + 1  # the level its half belongs to, all of it
        level = ll.explain(net, x[sample : sample + 1], "ig", tol=1e-15, target=0, max_steps=whole, steps=whole)
        np.testing.assert_allclose(got.values[sample], level.values[0], rtol=1e-12)


def relu_mlp() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    return net.double().eval(), torch.randn(12, 8, dtype=torch.float64) * 2


def test_no_sample_stops_below_steps_points():
    """`steps` guards a ReLU net against stopping on a chance cancellation at few points: the half
    level below the first level checked is not checked either."""
    net, x = relu_mlp()
    assert ll.explain(net, x, "ig", tol=5e-2, target=0).error.evaluations.min() < 9  # halves stop early here
    for steps in (9, 17, 33):
        got = ll.explain(net, x, "ig", tol=5e-2, steps=steps, target=0)
        assert got.error.evaluations.min() >= steps, (steps, got.error.evaluations)
    fixed = ll.explain(net, x, "ig", tol=5e-2, steps=17, max_steps=17, target=0)
    assert (fixed.error.evaluations == 17).all()


def test_feature_tol_is_checked_between_whole_levels_only():
    """What a half level moved the values understates their error: with feature_tol every sample
    stops on a whole level (2^k + 1 points), where the change is from one level to the next."""
    net, x = relu_mlp()
    plain = ll.explain(net, x, "ig", tol=1e-2, target=0).error.evaluations
    assert not np.isin(plain, 2 ** np.arange(1, 9) + 1).all()  # without it, some stop at a half level
    got = ll.explain(net, x, "ig", tol=1e-2, feature_tol=0.02, target=0)
    assert np.isin(got.error.evaluations, 2 ** np.arange(1, 9) + 1).all(), got.error.evaluations
    assert (got.error.change[got.error.met] <= 0.02).all()
