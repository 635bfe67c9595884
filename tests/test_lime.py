"""LIME: against scikit-learn's weighted fit and Captum's Lime on the same coalitions,
exact recovery on linear models, its fit R², determinism, options and `score`."""

import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import SkLearnLinearRegression, SkLearnRidge
from captum.attr import Lime
from captum.attr._core.lime import get_exp_kernel_similarity_function
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics.pairwise import cosine_distances
from torch import nn

from leanlens.errors import BadOption
from leanlens.explain import explain
from leanlens.explain.explanation import Explanation
from leanlens.explain.lime import lime_design, lime_weights

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
    """By hand: cosine distances 0, 1 - 2/(2·2) ... = 1 - sqrt(1/2), and 1 for the empty
    coalition; weight exp(-D² / (2 · 0.25²)) = exp(-8 D²), as lime_image and Captum write it."""
    z = torch.tensor([[True] * 4, [True, True, False, False], [False] * 4])
    w = lime_weights(z, 0.25)
    np.testing.assert_allclose(w.numpy(), [1.0, np.exp(-8 * (1 - np.sqrt(0.5)) ** 2), np.exp(-8.0)], rtol=1e-12)


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


# against references on the same coalitions --------------------------------------------

D, SAMPLES, WIDTH, SEED = 6, 300, 0.25, 2


@pytest.fixture(scope="module")
def curved():
    """A model with interactions, so the fit depends on which coalitions weigh how much."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, 2)).eval()
    with torch.no_grad():
        model[0].weight *= 3  # deep into tanh's bends
    return model


def coalition_scores(model, x, z, target):
    """The model's target score on x with features off (zero) where the coalition is False."""
    with torch.no_grad():
        inputs = torch.as_tensor(np.where(z, x, 0.0), dtype=torch.float32)
        return model(inputs)[:, target].double().numpy()


def independent_weights(z):
    """lime_image's recipe: cosine distance of each binary vector to the all-on one, exp kernel."""
    distance = cosine_distances(z.astype(float), np.ones((1, z.shape[1])))[:, 0]
    return np.exp(-(distance**2) / (2 * WIDTH**2))


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_lime_equals_scikit_learns_weighted_fit(curved, tabular, alpha):
    z = lime_design(D, SAMPLES, WIDTH, SEED)[0].numpy()
    w = independent_weights(z)
    exp = explain(curved, tabular[:, :D], "lime", target=1, samples=SAMPLES, seed=SEED, alpha=alpha)
    for i, x in enumerate(tabular[:, :D]):
        y = coalition_scores(curved, x, z, 1)
        fit = (Ridge(alpha=alpha) if alpha else LinearRegression()).fit(z, y, sample_weight=w)
        np.testing.assert_allclose(exp.values[i], fit.coef_, rtol=0, atol=1e-5 * np.abs(fit.coef_).max())
        assert exp.score[i] == pytest.approx(fit.score(z, y, sample_weight=w), abs=1e-6)
    assert 0.2 < exp.score.min() and exp.score.max() < 0.999  # a partial fit: the weights matter


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_lime_equals_captum_with_the_same_kernel_and_coalitions(curved, tabular, alpha):
    """Captum's own exponential kernel, given the binary vectors, and its scikit-learn fit."""
    z = lime_design(D, SAMPLES, WIDTH, SEED)[0]
    kernel = get_exp_kernel_similarity_function("cosine", kernel_width=WIDTH)

    def similarity(original, perturbed, coalition, **_):
        return kernel(torch.ones_like(coalition), coalition, None)

    def our_coalitions(original, **_):
        yield from (row[None].long() for row in z)

    linear = SkLearnRidge(alpha=alpha) if alpha else SkLearnLinearRegression()
    captum = Lime(curved, interpretable_model=linear, similarity_func=similarity, perturb_func=our_coalitions)
    ours = explain(curved, tabular[:, :D], "lime", target=0, samples=SAMPLES, seed=SEED, alpha=alpha)
    for i in range(len(tabular)):
        x = torch.as_tensor(tabular[i : i + 1, :D])
        theirs = captum.attribute(x, baselines=0.0, target=0, feature_mask=torch.arange(D)[None], n_samples=SAMPLES,
                                  perturbations_per_eval=SAMPLES)[0].numpy()
        # Captum fits in float32
        np.testing.assert_allclose(ours.values[i], theirs, rtol=0, atol=2e-4 * np.abs(theirs).max())


def test_lime_refuses_too_few_samples_for_its_fit(linear, tabular):
    """With no more distinct coalitions than unknowns (8 coefficients, 1 intercept) the fit
    interpolates: R² = 1 however wrong it is."""
    for samples in (1, 5, 9):
        with pytest.raises(BadOption, match=f"samples={samples} gives .* too few to fit 8 features.*hint: use samples > 9"):
            explain(linear, tabular, "lime", samples=samples)
    assert np.isfinite(explain(linear, tabular, "lime", samples=30).score).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method, samples", [("lime", 200), ("kernelshap", 144)])
def test_tol_on_a_sample_that_is_its_own_baseline_stops_at_once(method, samples, dtype):
    """A blank row under a zero baseline has no score gap: every coalition scores the same and the
    standard errors are rounding noise. A tolerance relative to a gap of 0 would chase that noise to
    max_samples (and print it as ~1e292 of the gap); tol never asks to beat the scores' rounding, in
    float32 or float64, for both sampling methods (20 features: coalitions drawn, not listed)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 2)).to(dtype).eval()
    x = torch.cat([torch.zeros(1, 20), torch.randn(1, 20)]).to(dtype)
    got = explain(net, x, method, tol=0.01, target=0, samples=samples, max_samples=2**14)
    first = explain(net, x, method, tol=0.01, target=0, samples=samples, max_samples=samples)  # one draw
    assert got.error.met[0] and got.error.evaluations[0] == first.error.evaluations[0]  # stopped at once
    assert 0 < got.error.gap[0] < 1e-4  # the floor: 4 ulps of f(x) / tol
    assert np.abs(got.values[0]).max() < 1e-6  # nothing to attribute
    assert got.error.evaluations[1] > got.error.evaluations[0]  # the other sample refined as usual
