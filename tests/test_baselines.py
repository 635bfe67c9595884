"""IG and perturbation baselines: each named baseline against an independent computation."""

import numpy as np
import pytest
import torch
from explain_support import make_images
from scipy import ndimage

import leanlens as ll
from leanlens.errors import BadOption
from leanlens.explain.baselines import blur, make_baseline

X = torch.as_tensor(make_images(3))  # (3, 1, 32, 32)


def test_blur_equals_scipy_gaussian_filter():
    x = torch.randn(2, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    for sigma in (1.0, 2.4):
        want = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0)
        np.testing.assert_allclose(blur(x, sigma).numpy(), want, rtol=1e-5, atol=1e-5)


def test_blur_of_an_impulse_worked_out_by_hand():
    """σ = 1/sqrt(2 ln 2) makes the Gaussian exp(-t²/2σ²) = 2^(-t²): taps 1, 1/2, 1/16, 1/512 at
    |t| = 0..3 (three σ, rounded), i.e. [1, 32, 256, 512, 256, 32, 1] / 1090 once normalised.
    An impulse at the centre of a 7×7 image reaches the border at offset 3, where mirror
    padding (d c b | a b c d) reflects the 1/1090 tap back in: the border pixel gets it twice.
    Each axis gives [2, 32, 256, 512, 256, 32, 2] / 1090, and the blur is their outer product."""
    impulse = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
    impulse[0, 0, 3, 3] = 1
    axis = np.array([2, 32, 256, 512, 256, 32, 2]) / 1090
    got = blur(impulse, 1 / np.sqrt(2 * np.log(2)))
    np.testing.assert_allclose(got[0, 0].numpy(), np.outer(axis, axis), rtol=1e-12, atol=1e-15)


def test_blur_default_keeps_a_flat_image_and_smooths_noise():
    flat = torch.full((1, 2, 32, 32), 0.7)
    np.testing.assert_allclose(make_baseline(flat, "blur").numpy(), 0.7, rtol=1e-6)
    noise = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    assert make_baseline(noise, "blur").std() < 0.25 * noise.std()


def test_mean_baseline_is_each_samples_channel_mean():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    base = make_baseline(x, "mean")
    np.testing.assert_allclose(base.numpy(), x.mean(dim=(2, 3), keepdim=True).expand_as(x).numpy(), rtol=1e-6)
    tabular = torch.randn(4, 5)
    np.testing.assert_allclose(make_baseline(tabular, "mean").numpy(), tabular.mean(1, keepdim=True).expand(4, 5).numpy(), rtol=1e-6)


def test_uniform_baseline_is_seeded_and_within_each_samples_range():
    a, b, c = make_baseline(X, "uniform", seed=0), make_baseline(X, "uniform", seed=0), make_baseline(X, "uniform", seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    flat, base = X.flatten(1), a.flatten(1)
    assert (base >= flat.min(1, keepdim=True).values).all() and (base <= flat.max(1, keepdim=True).values).all()


@pytest.mark.parametrize("baseline", ["zeros", "mean", "blur", "uniform"])
def test_ig_completeness_holds_for_every_named_baseline(resnet, baseline, one_thread):
    exp = ll.explain(resnet, X.numpy(), "ig", baseline=baseline, steps=48)
    scores = resnet(X).detach()
    base_scores = resnet(make_baseline(X, baseline)).detach()
    t = torch.as_tensor(exp.target)[:, None]
    gap = (scores.gather(1, t) - base_scores.gather(1, t))[:, 0].numpy()
    np.testing.assert_allclose(exp.values.reshape(3, -1).sum(1), gap, rtol=2e-3, atol=2e-3 * np.abs(gap).max())
    np.testing.assert_allclose(exp.delta, exp.values.reshape(3, -1).sum(1) - gap, atol=1e-4)


def test_bad_baselines_name_the_fix():
    with pytest.raises(BadOption, match="unknown baseline 'black'"):
        make_baseline(X, "black")
    with pytest.raises(BadOption, match="'blur' baseline needs images"):
        make_baseline(torch.zeros(2, 5), "blur")
    with pytest.raises(BadOption, match="baseline has shape"):
        make_baseline(X, np.zeros((2, 2)))
