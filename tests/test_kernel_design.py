"""Kernel SHAP's design: distinct, nested, reproducible draws, and standard errors as their formula says."""

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.explain.kernel_design import (
    MAX_ENUMERATE,
    CoalitionDraws,
    coalition_keys,
    kernel_design,
    random_coalitions,
)
from leanlens.explain.kernel_error import (
    PairedRows,
    normal_inverse,
    regression_projection,
    standard_errors,
)
from leanlens.explain.shapley import constrained_wls

pytestmark = pytest.mark.usefixtures("one_thread")


def sampled_by_size(design) -> dict[int, np.ndarray]:
    """Each sampled size's drawn coalitions (the units' first rows), in the design's order."""
    z = design.z[design.first].numpy()
    return {int(s): z[z.sum(1) == s] for s in np.unique(z.sum(1))}


@pytest.mark.parametrize("d, sampler", [(20, "kernel"), (20, "leverage"), (61, "leverage"), (70, "kernel")])  # 70: bytes keys
def test_draws_are_distinct_and_complemented_with_each_size_in_its_stratum(d, sampler):
    design = kernel_design(d, 3000, seed=4, sampler=sampler)
    keys = coalition_keys(design.z)
    assert len(np.unique(keys)) == len(keys) <= 3000  # no coalition twice, not even a complement
    assert torch.equal(design.z[design.second], ~design.z[design.first])
    sizes = design.z[design.first].sum(1)
    for stratum in range(len(design.population)):
        mine = sizes[design.stratum == stratum]
        s = int(mine.min())
        assert (mine == s).all() or (2 * s == d)  # one size pair a stratum
        assert design.population[stratum] == math.comb(d, s) / (2 if 2 * s == d else 1)
    assert any(math.comb(d, s) > MAX_ENUMERATE for s in sampled_by_size(design))  # random draws were made


def test_coalitions_whose_keys_tie_still_have_their_size(monkeypatch):
    """A draw keeps the sizes[r] features with the smallest keys; where keys tie at that threshold
    (64-bit keys: about once in 1e16 rows) the ranking falls back to argsort, so no row takes more."""
    sizes, numbers = np.array([1, 3, 5, 7]), np.arange(4)
    drawn = random_coalitions(9, 0, sizes, numbers)
    assert (drawn.sum(1) == sizes).all()
    module = sys.modules[random_coalitions.__module__]
    monkeypatch.setattr(module, "_scramble", lambda x: np.zeros_like(x))  # every key ties
    tied = random_coalitions(9, 0, sizes, numbers)
    np.testing.assert_array_equal(tied, np.arange(9) < sizes[:, None])


def test_a_design_does_not_depend_on_the_designs_asked_for_before_it():
    """Same seed, same design, whether drawn alone or after smaller ones sharing the draws; and a
    larger budget's draws of each size begin with the smaller budget's (nested)."""
    d, seed = 40, 7
    alone = kernel_design(d, 2500, seed, "leverage")
    draws = CoalitionDraws(d, seed)
    small = kernel_design(d, 300, seed, "leverage", draws)
    kernel_design(d, 1100, seed, "kernel", draws)  # another sampler's shares in between
    after = kernel_design(d, 2500, seed, "leverage", draws)
    assert torch.equal(alone.z, after.z) and torch.equal(alone.w, after.w)
    large, smaller = sampled_by_size(alone), sampled_by_size(small)
    random = [s for s in smaller if s in large and math.comb(d, s) > MAX_ENUMERATE]
    assert len(random) >= 5
    for s in random:
        assert len(smaller[s]) < len(large[s])
        np.testing.assert_array_equal(large[s][: len(smaller[s])], smaller[s])
    other = kernel_design(d, 2500, seed + 1, "leverage")
    assert not torch.equal(other.z, alone.z)


def test_standard_errors_are_the_stratified_formula_unit_by_unit():
    """The vectorised errors against the module docstring's formula written as loops."""
    d, generator = 14, torch.Generator().manual_seed(0)
    design = kernel_design(d, 600, seed=1, sampler="kernel")
    y = torch.randn(3, len(design.z), generator=generator, dtype=torch.float64)
    gap = torch.randn(3, generator=generator, dtype=torch.float64)
    inverse = normal_inverse(design.z, design.w, "cpu")
    phi = constrained_wls(design.z, design.w, y, gap, inverse)
    got = standard_errors(design, y, phi, inverse)
    z = design.z.double()
    p = regression_projection(inverse)
    residual = design.w * (y - phi @ z.T)
    expected = torch.zeros(3, d, dtype=torch.float64)
    for h, population in enumerate(design.population.tolist()):
        units = (design.stratum == h).nonzero()[:, 0]
        unit = [sum(residual[:, m, None] * z[m] for m in (design.first[i], design.second[i])) for i in units]
        v = torch.stack([u @ p for u in unit], 1)  # (N, k, d): P u_i, P symmetric
        k = len(units)
        if k == 1:
            expected += (1 - 1 / population) * v[:, 0] ** 2
        else:
            expected += (1 - k / population) * k / (k - 1) * ((v - v.mean(1, keepdim=True)) ** 2).sum(1)
    assert len(design.population) > 2 and (torch.bincount(design.stratum) > 1).any()
    torch.testing.assert_close(got, expected.sqrt(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("d, budget", [(12, 300), (14, 600), (60, 700), (10, 1022)])  # 1022: all enumerated
def test_paired_products_equal_the_full_design_ones(d, budget):
    """Z'WZ and Z'Wy from each unit's first coalition alone equal the products over every row."""
    design = kernel_design(d, budget, seed=2, sampler="leverage")
    rows, z = PairedRows.of(design, "cpu"), design.z.double()
    y = torch.randn(3, len(z), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(rows.normal(), z.T @ (design.w[:, None] * z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rows.moments(y), (design.w[:, None] * z).T @ y.T, rtol=1e-12, atol=1e-12)


class GroupedTanh(nn.Module):
    """f(x) = sum over groups of 4 features of a small tanh MLP of the group: exact Shapley values
    by brute force within each group, and more features than any size can list (random draws)."""

    def __init__(self, groups: int):
        super().__init__()
        torch.manual_seed(0)
        self.parts = nn.ModuleList(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
                                   for _ in range(groups))

    def forward(self, x):
        x = x.double().view(len(x), len(self.parts), 4)
        f = sum(part(x[:, g]) for g, part in enumerate(self.parts))[:, 0]
        return torch.stack([f, -f], 1)

    def exact(self, x) -> np.ndarray:
        return np.concatenate([ll.explain(part, x[:, 4 * g : 4 * g + 4], "shapley", target=0).values
                               for g, part in enumerate(self.parts)], 1)


def test_standard_errors_cover_exact_values_where_coalitions_are_drawn_at_random():
    """32 features: sizes 3 to 29 have more than MAX_ENUMERATE coalitions and are drawn. Over 8 seeds
    |estimate - exact| <= 2 s.e. for at least 90 % of values (measured: 0.938 kernel, 0.945 leverage)."""
    model = GroupedTanh(8)
    x = torch.randn(4, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 1.5
    exact = model.exact(x)
    assert math.comb(32, 3) > MAX_ENUMERATE
    for sampler in ("kernel", "leverage"):
        runs = [ll.explain(model, x, "kernelshap", target=0, samples=600, seed=seed, sampler=sampler)
                for seed in range(8)]
        covered = np.mean([np.abs(r.values - exact) <= 2 * r.error.values for r in runs])
        assert 0.9 <= covered < 1.0, (sampler, covered)


def test_more_than_a_thousand_features_whose_coalition_counts_overflow_a_float():
    """C(1100, 550) > 1e308: the design compares and corrects with it without turning it into a
    float. 4000 coalitions are 2000 units, more than the 1100 features (with fewer the regression
    is underdetermined); paired draws then make the fit exact for a linear model, phi = w x."""
    torch.manual_seed(0)
    linear = nn.Linear(1100, 2).double()
    x = torch.randn(2, 1100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = ll.explain(linear, x, "kernelshap", target=0, samples=4000)
    expected = (linear.weight[0] * x).detach().numpy()
    np.testing.assert_allclose(got.values, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    assert (got.error.values < 1e-6).all()


def test_too_few_coalitions_to_determine_the_values_are_refused():
    """Below 2d + 2 coalitions the paired regression is not determined: its answer is one of many and
    its standard errors read ~0. Refused, for `samples` and for the cap of a `tol` run, in one line."""
    from errors_support import one_line

    from leanlens.errors import BadOption

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 2)).double().eval()
    x = torch.randn(2, 12, dtype=torch.float64)
    for options in ({"samples": 25}, {"tol": 0.01, "max_samples": 20}):
        with pytest.raises(BadOption) as error:
            ll.explain(net, x, "kernelshap", target=0, seed=0, **options)
        assert "cannot determine 12 Shapley values (at least 26 can)" in one_line(error)
    fitted = ll.explain(net, x, "kernelshap", target=0, seed=0, samples=26)
    assert (fitted.error.values > 0).all()  # determined, with residuals left to measure the spread
