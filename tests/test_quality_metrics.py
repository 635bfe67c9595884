"""Quality metrics against known answers: faithfulness, localization, robustness,
concentration, the randomization check and SSIM."""

import numpy as np
import pytest
import torch
from metrics_support import train_digits
from torch import nn

import leanlens as ll
from leanlens.errors import BadInput, BadOption, MissingCapability
from leanlens.metrics import (
    SIMILARITIES,
    complexity,
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
    max_sensitivity,
    pointing_game,
    randomization_check,
    relevance_mass,
    relevance_rank_accuracy,
    sparseness,
    spearman,
    ssim,
)

RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def digits(one_thread):
    return train_digits()


def _linear(weight: np.ndarray) -> nn.Linear:
    """Scores = x @ weight.T: each feature's effect on each class is known exactly."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight))
    return layer


# faithfulness ------------------------------------------------------------------

def test_deletion_curve_by_hand_on_a_linear_model():
    # class 0's score is x0 + 2 x1 + 3 x2 + 4 x3; x = 1 everywhere; delete by attribution order
    model = _linear(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))
    x = np.ones((1, 4), dtype=np.float32)
    values = np.array([[0.1, 0.4, 0.2, 0.3]])  # order: x1, x3, x2, x0
    curve = deletion_curve(model, x, values, 0, steps=4, softmax=False)
    np.testing.assert_allclose(curve, [[10, 8, 4, 1, 0]])
    np.testing.assert_allclose(insertion_curve(model, x, values, 0, steps=4, softmax=False), [[0, 2, 6, 9, 10]])
    # trapezoid on [0, 1] at spacing 1/4
    np.testing.assert_allclose(deletion_auc(model, x, values, 0, steps=4, softmax=False), [(10 / 2 + 8 + 4 + 1) / 4])
    np.testing.assert_allclose(insertion_auc(model, x, values, 0, steps=4, softmax=False), [(2 + 6 + 9 + 10 / 2) / 4])


def test_deletion_steps_split_features_evenly_and_baseline_is_used():
    model = _linear(np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0.0] * 6]))
    x = np.zeros((1, 6), dtype=np.float32)
    values = np.arange(6.0)[None]
    # baseline 2: removing k features adds 2k; 6 features in 4 steps take 0, 1, 3, 4, 6 of them
    curve = deletion_curve(model, x, values, 0, steps=4, baseline=2.0, softmax=False)
    np.testing.assert_allclose(curve, [[0, 2, 6, 8, 12]])
    shares = np.array([0, 1, 3, 4, 6]) / 6
    np.testing.assert_allclose(deletion_auc(model, x, values, 0, steps=4, baseline=2.0, softmax=False),
                               [np.trapezoid(curve[0], shares)])


def test_pixel_maps_remove_a_pixel_in_every_channel():
    # 2 channels of 2 pixels; the score sums everything; a (N, H, W) map ranks the pixels
    model = nn.Sequential(nn.Flatten(), _linear(np.ones((2, 4))))
    x = np.ones((1, 2, 1, 2), dtype=np.float32)
    curve = deletion_curve(model, x, np.array([[[0.0, 1.0]]]), 0, steps=2, softmax=False)
    np.testing.assert_allclose(curve, [[4, 2, 0]])


def test_softmax_scores_are_probabilities_and_target_defaults_to_the_explanation():
    model = _linear(np.array([[1.0, 0.0], [0.0, 1.0]]))
    x = np.array([[2.0, 0.0]], dtype=np.float32)
    exp = ll.explain(model, x, "saliency", target=1, absolute=False)
    curve = deletion_curve(model, x, exp, steps=2)  # follows class 1, the explanation's target
    p1 = 1 / (1 + np.exp(2.0))
    np.testing.assert_allclose(curve, [[p1, p1, 0.5]], rtol=1e-6)  # x1 (attribution 1) goes first


def test_ig_deletes_faster_and_inserts_faster_than_random(digits):
    model, x, _ = digits
    x = x[:64]
    ig = ll.explain(model, x, "ig", steps=16)
    noise = RNG.normal(size=x.shape)
    random_deletion = deletion_auc(model, x, noise, ig.target, steps=16).mean()
    random_insertion = insertion_auc(model, x, noise, ig.target, steps=16).mean()
    assert deletion_auc(model, x, ig, steps=16).mean() < 0.5 * random_deletion
    assert insertion_auc(model, x, ig, steps=16).mean() > 1.5 * random_insertion


def test_faithfulness_refuses_bad_arguments():
    model = _linear(np.ones((2, 4)))
    x = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(BadInput, match="do not fit"):
        deletion_auc(model, x, np.ones((2, 3)))
    with pytest.raises(BadInput, match="do not fit"):
        deletion_auc(model, x, np.ones((3, 4)))
    with pytest.raises(BadOption, match="steps"):
        deletion_auc(model, x, x, steps=0)
    with pytest.raises(BadOption, match="baseline"):
        deletion_auc(model, x, x, baseline=np.zeros(3))
    with pytest.raises(BadInput, match="baseline"):
        deletion_auc(model, x, x, baseline="zeros")
    with pytest.raises(BadOption, match="softmax"):
        deletion_auc(model, x, x, softmax=1)
    with pytest.raises(BadInput, match="target"):
        deletion_auc(model, x, x, target=[0, 5])
    with pytest.raises(BadInput, match="target"):
        deletion_auc(model, x, x, target=0.5)


# localization --------------------------------------------------------------------

def test_a_perfect_mask_explanation_scores_one_everywhere():
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[0, 2:4, 2:5] = masks[1, 0, 7] = masks[2, 5:8, 0:2] = True
    values = masks * RNG.uniform(0.5, 1.0, size=masks.shape)  # relevance only on the object
    for score in (pointing_game, relevance_mass, relevance_rank_accuracy):
        np.testing.assert_array_equal(score(values, masks), 1.0)


def test_relevance_rank_accuracy_by_hand():
    masks = np.zeros((2, 1, 4), dtype=bool)
    masks[:, 0, :2] = True  # K = 2
    values = np.array([[[0.9, 0.1, 0.8, 0.0]], [[0.0, 0.1, 0.8, 0.9]]])
    np.testing.assert_allclose(relevance_rank_accuracy(values, masks), [0.5, 0.0])
    assert relevance_rank_accuracy(values[:1], np.zeros((1, 1, 4), dtype=bool))[0] == 0.0  # nothing to rank


# concentration ------------------------------------------------------------------

@pytest.mark.parametrize("d", [2, 10, 64])
def test_gini_and_entropy_extremes(d):
    one_hot = np.zeros((1, d))
    one_hot[0, d // 2] = -3.0  # magnitude counts, not sign
    constant = np.full((1, d), 0.7)
    np.testing.assert_allclose(sparseness(one_hot), [1 - 1 / d])  # the most d features allow
    np.testing.assert_allclose(sparseness(constant), [0.0], atol=1e-15)
    np.testing.assert_allclose(complexity(constant), [np.log(d)])
    np.testing.assert_allclose(complexity(one_hot), [0.0])
    assert sparseness(np.zeros((1, d)))[0] == 0.0 and complexity(np.zeros((1, d)))[0] == pytest.approx(np.log(d))


def test_gini_and_entropy_rank_maps_between_the_extremes():
    maps = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    assert np.all(np.diff(sparseness(maps)) > 0)
    assert np.all(np.diff(complexity(maps)) < 0)
    np.testing.assert_allclose(complexity(maps[1:3]), [np.log(3), np.log(2)])
    # Gini of (0, 0, 1, 1): sum((2i - 5) a_i) / (4 * 2) = (1 + 3) / 8
    assert sparseness(maps[2:3])[0] == pytest.approx(0.5)


def test_concentration_refuses_empty_maps():
    with pytest.raises(BadInput, match="no features"):
        sparseness(np.zeros((2, 0)))
    with pytest.raises(BadInput, match="nan"):
        complexity(np.full((1, 3), np.nan))


# robustness ---------------------------------------------------------------------

def test_max_sensitivity_of_a_linear_models_gradient_is_zero():
    model = _linear(RNG.normal(size=(3, 5)))
    x = RNG.normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(max_sensitivity(model, x, "saliency", perturb_radius=0.5), 0.0)


def test_max_sensitivity_of_input_x_gradient_by_hand():
    # e(x) = w * x for class 0, so ||e(x + d) - e(x)|| / ||e(x)|| = ||w * d|| / ||w * x||
    w = np.array([[1.0, -2.0, 0.5]])
    model = _linear(np.vstack([w, np.zeros_like(w)]))
    x = np.array([[1.0, 2.0, -1.0]], dtype=np.float32)
    radius, n, seed = 0.1, 5, 7
    noise = torch.Generator().manual_seed(seed)
    deltas = [(torch.rand((1, 3), generator=noise, dtype=torch.float64) * 2 - 1).numpy() * radius for _ in range(n)]
    want = max(np.linalg.norm(w * (x + d).astype(np.float32) - w * x) for d in deltas) / np.linalg.norm(w * x)
    got = max_sensitivity(model, x, "input_x_gradient", target=0, perturb_radius=radius, n_perturb_samples=n, seed=seed)
    np.testing.assert_allclose(got, [want], rtol=1e-5)


def test_max_sensitivity_passes_method_options_and_refuses_bad_ones():
    model = _linear(RNG.normal(size=(2, 4)))
    x = RNG.normal(size=(2, 4)).astype(np.float32)
    # IG of a linear model from a zero baseline is input x gradient, whatever its own seed
    got = max_sensitivity(model, x, "ig", options={"steps": 4, "seed": 3}, n_perturb_samples=2, seed=1)
    want = max_sensitivity(model, x, "input_x_gradient", n_perturb_samples=2, seed=1)
    assert np.all(want > 0.001)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    with pytest.raises(BadOption, match="no option"):
        max_sensitivity(model, x, "ig", options={"stepz": 4})
    with pytest.raises(BadOption, match="options"):
        max_sensitivity(model, x, "ig", options=4)
    with pytest.raises(BadOption, match="perturb_radius"):
        max_sensitivity(model, x, perturb_radius=0.0)
    with pytest.raises(BadOption, match="n_perturb_samples"):
        max_sensitivity(model, x, n_perturb_samples=0)
    with pytest.raises(BadOption, match="seed"):
        max_sensitivity(model, x, seed=-1)


# randomization ------------------------------------------------------------------

def test_randomizing_a_linear_model_gives_the_new_weights_ranking():
    weight = RNG.normal(size=(3, 6))
    model = _linear(weight)
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    state = torch.random.get_rng_state()
    check = randomization_check(model, x, "saliency", target=1, options={"absolute": False}, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the user's random stream is untouched
    np.testing.assert_array_equal(model.weight.detach().numpy(), weight.astype(np.float32))  # the model too
    fresh = nn.Linear(6, 3, bias=False)
    torch.manual_seed(5)
    fresh.reset_parameters()
    want = spearman(np.tile(weight[1], (4, 1)), np.tile(fresh.weight[1].detach().numpy(), (4, 1)))
    assert check.layers == ("<model>",)
    np.testing.assert_allclose(check.similarity, [want], atol=1e-6)


def test_randomization_cascades_from_the_output(digits):
    model, x, _ = digits
    check = randomization_check(model, x[:64], "ig", options={"steps": 16},
                                similarity=lambda a, b: spearman(np.abs(a), np.abs(b)))
    assert check.layers == ("8", "6", "2", "0")  # linear, linear, conv, conv: output first
    assert check.similarity.shape == (4, 64)
    assert np.all(np.diff(check.mean()) < 0)  # every further layer lowers the similarity
    signed = randomization_check(model, x[:64], "ig", options={"steps": 16})
    assert np.all(np.abs(signed.mean()) < 0.3)  # with random output weights the signed map is noise


def test_randomization_needs_a_torch_model():
    with pytest.raises(MissingCapability, match="randomization"):
        randomization_check(lambda x: np.ones((len(x), 2)), np.ones((2, 3)), "occlusion")


# SSIM and self-similarity ------------------------------------------------------------

def test_a_map_compared_with_itself_scores_one_on_every_similarity():
    maps = RNG.normal(size=(3, 16, 16))
    for fn in [*SIMILARITIES.values(), ssim]:
        np.testing.assert_allclose(fn(maps, maps), 1.0, atol=1e-12)
    assert ssim(np.full((1, 11, 11), 0.3), np.full((1, 11, 11), 0.3))[0] == 1.0


def test_ssim_matches_scikit_image():
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    a = RNG.normal(size=(4, 20, 17))
    b = a + RNG.normal(scale=0.7, size=a.shape)
    for sigma, data_range in ((1.5, None), (1.0, 3.0)):
        got = ssim(a, b, sigma=sigma, data_range=data_range)
        spread = [max(a[i].max(), b[i].max()) - min(a[i].min(), b[i].min()) for i in range(len(a))]
        want = [structural_similarity(a[i], b[i], gaussian_weights=True, sigma=sigma, use_sample_covariance=False,
                                      data_range=data_range or spread[i]) for i in range(len(a))]
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_ssim_falls_with_noise_and_refuses_small_maps():
    a = RNG.normal(size=(1, 24, 24))
    scores = [ssim(a, a + RNG.normal(scale=s, size=a.shape))[0] for s in (0.1, 0.5, 2.0)]
    assert scores[0] > scores[1] > scores[2]
    with pytest.raises(BadInput, match="window"):
        ssim(np.ones((1, 8, 8)), np.ones((1, 8, 8)))
    assert ssim(np.eye(8)[None], np.eye(8)[None], sigma=0.5)[0] == pytest.approx(1.0)
    with pytest.raises(BadOption, match="sigma"):
        ssim(a, a, sigma=0)
    with pytest.raises(BadOption, match="data_range"):
        ssim(a, a, data_range=-1.0)
    with pytest.raises(BadInput, match="shape"):
        ssim(a, a[:, :20])
