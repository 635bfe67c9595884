"""Quality metrics against Quantus on the same inputs, settings and random draws.

Where a definition differs on purpose, the test says why and compares where they meet.
"""

import numpy as np
import pytest
import torch
from metrics_support import train_digits

import leanlens as ll
from leanlens import metrics

quantus = pytest.importorskip("quantus")
RNG = np.random.default_rng(11)
QUIET = {"disable_warnings": True, "display_progressbar": False}


@pytest.fixture(scope="module")
def trained(one_thread):
    model, x, _ = train_digits()
    return model, x[:32]


def _explainer(method: str, **options):
    """Quantus' explain_func calling ll.explain, so both sides explain alike."""
    def explain_func(model, inputs, targets, **_):
        return ll.explain(model, inputs, method, target=np.asarray(targets), **options).values
    return explain_func


def test_sparseness_and_complexity_match_quantus(trained):
    model, x = trained
    a = RNG.normal(size=x.shape).astype(np.float32)
    y = np.zeros(len(x), dtype=int)
    # Quantus adds 1e-7 to every |attribution| (scaled to a max of 1) before the Gini index:
    # on maps of order 1 that moves the score by about 1e-7
    want = quantus.Sparseness(**QUIET)(model=model, x_batch=x, y_batch=y, a_batch=a.copy())
    np.testing.assert_allclose(metrics.sparseness(a), want, atol=1e-4)
    want = quantus.Complexity(**QUIET)(model=model, x_batch=x, y_batch=y, a_batch=a.copy())
    np.testing.assert_allclose(metrics.complexity(a), want, atol=1e-4)


def test_deletion_curve_matches_quantus_pixel_flipping(trained):
    model, x = trained
    exp = ll.explain(model, x, "saliency", absolute=False)
    steps = 16  # 64 pixels, 4 a step
    metric = quantus.PixelFlipping(features_in_step=4, perturb_baseline=0.0, normalise=False, abs=False, **QUIET)
    want = metric(model=model, x_batch=x, y_batch=exp.target, a_batch=exp.values.copy(), softmax=True)
    ours = metrics.deletion_curve(model, x, exp, steps=steps, baseline=0.0, softmax=True)
    # Quantus' curve starts after the first step; ours also holds the unperturbed score
    np.testing.assert_allclose(ours[:, 1:], want, atol=1e-4)


def test_localization_matches_quantus():
    x = RNG.uniform(size=(6, 1, 12, 12)).astype(np.float32)
    a = RNG.uniform(size=x.shape).astype(np.float32)  # positive and without ties: the definitions meet
    s = np.zeros(x.shape, dtype=bool)
    for i in range(len(s)):
        r, c = RNG.integers(0, 8, size=2)
        s[i, 0, r:r + 1 + i % 4, c:c + 3] = True
    s[0, 0, *np.unravel_index(a[0, 0].argmax(), (12, 12))] = True  # one sure hit for the pointing game
    y = np.zeros(len(x), dtype=int)
    args = {"model": None, "x_batch": x, "y_batch": y, "a_batch": a, "s_batch": s.astype(np.float32)}
    cases = [(quantus.RelevanceRankAccuracy, metrics.relevance_rank_accuracy),
             (quantus.PointingGame, metrics.pointing_game),
             (quantus.RelevanceMassAccuracy, metrics.relevance_mass)]
    for peer, ours in cases:
        want = peer(normalise=False, abs=False, **QUIET)(**{**args, "a_batch": a.copy()})
        np.testing.assert_allclose(ours(a, s[:, 0]), np.asarray(want, dtype=float), atol=1e-6)


def test_max_sensitivity_matches_quantus_with_the_same_noise(trained):
    model, x = trained
    x = x[:16]
    radius, n, seed = 0.05, 4, 2
    target = ll.explain(model, x, "saliency").target
    noise = torch.Generator().manual_seed(seed)

    def same_noise(arr, indices, **_):  # the draws max_sensitivity makes with this seed, in its order
        return arr + (torch.rand(arr.shape, generator=noise, dtype=torch.float64) * 2 - 1).numpy() * radius

    metric = quantus.MaxSensitivity(nr_samples=n, perturb_func=same_noise, normalise=False, abs=False, **QUIET)
    want = metric(model=model, x_batch=x, y_batch=target, explain_func=_explainer("saliency"), a_batch=None)
    got = metrics.max_sensitivity(model, x, "saliency", perturb_radius=radius, n_perturb_samples=n, seed=seed)
    assert np.all(got > 0.01)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_randomization_check_matches_quantus_mprt(trained):
    model, x = trained
    seed = 7
    ours = metrics.randomization_check(model, x, "saliency", options={"absolute": False}, seed=seed)
    # Quantus seeds each layer's reset with seed + 1
    metric = quantus.MPRT(layer_order="top_down", seed=seed - 1, normalise=False, abs=False, **QUIET)
    target = ll.explain(model, x, "saliency").target
    want = metric(model=model, x_batch=x, y_batch=target, a_batch=None,
                  explain_func=_explainer("saliency", absolute=False))
    assert list(want)[1:] == list(ours.layers)
    np.testing.assert_allclose(ours.similarity, [want[name] for name in ours.layers], atol=1e-4)
