"""Attribution methods against captum, closed forms and hand-computed cases."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from explain_support import SIZE, assert_close, logits, make_images, smooth_baseline
from torch import nn

from leanlens.explain import explain
from leanlens.explain.cam import gradcam_plusplus_weights

pytestmark = pytest.mark.usefixtures("one_thread")


# Integrated Gradients: completeness --------------------------------------------------

@pytest.mark.parametrize("target", [0, 1])
@pytest.mark.parametrize("nonzero_baseline", [False, True])
def test_ig_completeness(resnet, images, target, nonzero_baseline):
    baseline = smooth_baseline() if nonzero_baseline else 0.0
    exp = explain(resnet, images, "ig", target=target, steps=64, baseline=baseline)
    base_batch = np.broadcast_to(np.asarray(baseline, dtype=np.float32), images.shape)
    gap = logits(resnet, images)[:, target] - logits(resnet, base_batch)[:, target]
    assert np.abs(gap).min() > 0.02  # the relative check below is not vacuous
    total = exp.values.reshape(len(images), -1).astype(np.float64).sum(1)
    # recomputed from the model's logits, independently of exp.delta
    assert np.all(np.abs(total - gap) <= 0.01 * np.abs(gap))
    # exp.delta is the same quantity, with the sign convention sum - gap
    assert exp.delta.shape == (len(images),)
    np.testing.assert_allclose(exp.delta, total - gap, rtol=0, atol=1e-4 * np.abs(gap).max())
    assert np.all(np.abs(exp.delta) <= 0.01 * np.abs(gap))


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left"])
def test_ig_exact_on_a_linear_model(rule):
    """Gradients are constant for a linear model, so every rule must give (x - b) · W[t] exactly."""
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    x = torch.randn(5, 6).numpy()
    base = torch.randn(6).numpy()
    exp = explain(lin, x, "ig", target=[0, 1, 2, 1, 0], rule=rule, steps=9, baseline=base)
    want = (x - base) * lin.weight.detach().numpy()[[0, 1, 2, 1, 0]]
    assert_close(exp.values, want, rtol=1e-5, atol_rel=1e-6)
    assert np.abs(exp.delta).max() < 1e-5


# Integrated Gradients: against captum -------------------------------------------------

@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle", "riemann_left", "riemann_right"])
def test_ig_matches_captum(resnet, images, rule):
    targets = [0, 1, 1, 0]
    base = smooth_baseline()
    exp = explain(resnet, images, "ig", target=targets, steps=24, rule=rule, baseline=base)
    x = torch.as_tensor(images)
    want = IntegratedGradients(resnet).attribute(
        x, baselines=torch.as_tensor(base)[None].expand_as(x), target=targets, n_steps=24, method=rule
    )
    assert_close(exp.values, want.numpy())


def test_ig_trapezoid_matches_captum_up_to_its_step_sum(resnet, images):
    """captum's trapezoid steps are 1/n with halved ends, summing to (n-1)/n; leanlens' sum to 1.

    So leanlens = captum · n/(n-1); leanlens' is the true trapezoid rule on linspace(0, 1, n)
    (see test_ig_exact_on_a_linear_model, where it is exact).
    """
    n, targets = 16, [1, 0, 1, 0]
    exp = explain(resnet, images, "ig", target=targets, steps=n, rule="riemann_trapezoid")
    want = IntegratedGradients(resnet).attribute(
        torch.as_tensor(images), target=targets, n_steps=n, method="riemann_trapezoid"
    )
    assert_close(exp.values, want.numpy() * n / (n - 1))


def test_ig_batch_size_does_not_change_values(resnet, images):
    small = explain(resnet, images, "ig", steps=20, batch_size=7)  # chunks straddle samples
    large = explain(resnet, images, "ig", steps=20, batch_size=128)
    assert_close(small.values, large.values, rtol=1e-5, atol_rel=1e-6)
    assert_close(small.delta, large.delta, rtol=1e-4, atol_rel=1e-4)
    assert small.options["batch_size"] == 7


# Saliency ---------------------------------------------------------------------------

def test_saliency_matches_captum(resnet, images):
    targets = [1, 0, 0, 1]
    exp = explain(resnet, images, "saliency", target=targets)
    want = Saliency(resnet).attribute(torch.tensor(images, requires_grad=True), target=targets, abs=True)
    assert_close(exp.values, want.numpy())
    assert (exp.values >= 0).all() and exp.values.max() > 0


def test_saliency_of_a_linear_model_is_its_weight_row():
    torch.manual_seed(1)
    lin = nn.Linear(5, 3, bias=False)
    x = torch.randn(4, 5).numpy()
    w = lin.weight.detach().numpy()
    signed = explain(lin, x, "saliency", target=2, absolute=False)
    np.testing.assert_allclose(signed.values, np.tile(w[2], (4, 1)), rtol=1e-6)
    absolute = explain(lin, x, "saliency", target=[0, 1, 2, 0])
    np.testing.assert_allclose(absolute.values, np.abs(w[[0, 1, 2, 0]]), rtol=1e-6)


# Grad-CAM ---------------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["stage3.relu2", "stage2.relu1"])
def test_gradcam_matches_captum(resnet, images, layer):
    targets = [0, 1, 0, 1]
    exp = explain(resnet, images, "gradcam", target=targets, layer=layer)
    module = dict(resnet.named_modules())[layer]
    want = LayerGradCam(resnet, module).attribute(torch.as_tensor(images), targets, relu_attributions=True)[:, 0].detach()
    assert exp.layer_values.shape == (4, 8, 8)
    assert_close(exp.layer_values, want.numpy())
    assert (exp.layer_values.reshape(4, -1).max(1) > 0).all()  # not trivially all zero
    assert exp.options["layer"] == layer


def test_gradcam_values_are_the_bilinear_upsampled_layer_map(resnet, images):
    exp = explain(resnet, images, "gradcam", target=1)
    assert exp.values.shape == (4, SIZE, SIZE)
    up = F.interpolate(torch.as_tensor(exp.layer_values)[:, None], size=(SIZE, SIZE), mode="bilinear",
                       align_corners=False)[:, 0]
    np.testing.assert_allclose(exp.values, up.numpy(), rtol=1e-6, atol=1e-7)


def test_cam_layer_defaults_to_the_last_spatial_one(resnet, images):
    for method in ("gradcam", "gradcam++"):
        auto = explain(resnet, images, method)
        assert auto.options["layer"] == "stage3.relu2"
        named = explain(resnet, images, method, layer="stage3.relu2")
        np.testing.assert_array_equal(auto.values, named.values)


# Grad-CAM++: hand-checked ---------------------------------------------------------------

class ConvGap(nn.Module):
    """conv → (relu) → global average pool → linear: score_t = Σ_c W[t, c] · mean(A_c) + b_t."""

    def __init__(self, channels: int, relu: bool):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, 2)

    def forward(self, x):
        return self.head(self.pool(self.relu(self.conv(x))).flatten(1))


def hand_cams(model, x, target):
    """Grad-CAM and Grad-CAM++ layer maps from the closed-form gradient g_c = W[t, c] / (H·W)."""
    with torch.no_grad():
        a = model.relu(model.conv(torch.as_tensor(x))).double().numpy()
    h, w = a.shape[-2:]
    g = model.head.weight.detach().double().numpy()[target][:, :, None, None] / (h * w)  # (N, C, 1, 1)
    g = np.broadcast_to(g, a.shape)
    cam = np.maximum((g.mean(axis=(2, 3))[:, :, None, None] * a).sum(1), 0)
    denominator = 2 * g**2 + a.sum(axis=(2, 3), keepdims=True) * g**3
    assert np.abs(denominator).min() > 0.2 * (g**2).min()  # well away from the 0/0 guard
    alpha = g**2 / denominator
    weights = (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
    campp = np.maximum((weights[:, :, None, None] * a).sum(1), 0)
    return cam, campp


def conv_gap_model(channels, relu, head):
    torch.manual_seed(3)
    model = ConvGap(channels, relu)
    with torch.no_grad():
        model.conv.bias.copy_(torch.linspace(0.3, 0.8, channels))
        model.head.weight.copy_(torch.as_tensor(head, dtype=torch.float32))
    return model.eval()


@pytest.mark.parametrize("relu, layer", [(False, "conv"), (True, "relu")])
def test_gradcam_plusplus_hand_computed(relu, layer):
    """The map's gradient is W[t, c] / (H·W) everywhere (for A < 0 too when there is no ReLU)."""
    # one channel with a negative weight for each class, so relu(g) matters, and
    # |W · mean(A)| of order 1, so the Σ A · g³ term matters
    model = conv_gap_model(3, relu=relu, head=[[2.0, -1.5, 0.7], [-0.8, 1.2, 2.5]])
    x = make_images(3, seed=5)[:, :, :12, :12]
    targets = [0, 1, 0]
    pp = explain(model, x, "gradcam++", target=targets, layer=layer)
    gc = explain(model, x, "gradcam", target=targets, layer=layer)
    cam, campp = hand_cams(model, x, np.array(targets))
    assert campp.max() > 0
    assert_close(pp.layer_values, campp, rtol=1e-4, atol_rel=1e-5)
    assert_close(gc.layer_values, cam, rtol=1e-4, atol_rel=1e-5)
    # and Grad-CAM++ is not Grad-CAM rescaled: with several channels its weights
    # relu(g_c)·HW / (2 + mean(A_c)·W_c) are not proportional to Grad-CAM's g_c
    assert not np.allclose(normalised(pp.layer_values), normalised(gc.layer_values), atol=1e-3)


def normalised(maps):
    maps = np.asarray(maps, dtype=np.float64)
    return maps / maps.reshape(len(maps), -1).max(1)[:, None, None]


def test_gradcam_plusplus_proportional_to_gradcam_for_one_nonnegative_channel():
    """One channel, A ≥ 0 (after a ReLU), positive weight: alpha = 1 / (2 + S·g) > 0 is
    constant over the map, so Grad-CAM++ = HW·alpha·Grad-CAM for each sample. (With more
    channels, or a negative weight, or A < 0, this does not hold; see the test above.)"""
    model = conv_gap_model(1, relu=True, head=[[1.5], [0.4]])
    x = make_images(3, seed=6)[:, :, :12, :12]
    pp = explain(model, x, "gradcam++", target=[0, 1, 0], layer="relu")
    gc = explain(model, x, "gradcam", target=[0, 1, 0], layer="relu")
    assert pp.layer_values.max() > 0
    np.testing.assert_allclose(normalised(pp.layer_values), normalised(gc.layer_values), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalised(pp.values), normalised(gc.values), rtol=1e-5, atol=1e-6)


# Batched equals one by one -----------------------------------------------------------

@pytest.mark.parametrize("method, options", [
    ("gradcam++", {}),
    ("gradcam", {}),
    ("ig", {"steps": 16}),
    ("saliency", {}),
])
def test_batch_equals_one_by_one(resnet, images, method, options):
    targets = [1, 0, 1, 1]
    batch = explain(resnet, images, method, target=targets, **options)
    for i in range(len(images)):
        alone = explain(resnet, images[i : i + 1], method, target=targets[i], **options)
        assert_close(batch.values[i : i + 1], alone.values, rtol=1e-4, atol_rel=1e-5)
        np.testing.assert_allclose(batch.predictions[i : i + 1], alone.predictions, rtol=1e-5, atol=1e-6)


# Input × gradient and SmoothGrad ----------------------------------------------------------

def test_input_x_gradient_matches_captum(resnet, images):
    from captum.attr import InputXGradient

    ours = explain(resnet, images, "input_x_gradient")
    theirs = InputXGradient(resnet).attribute(torch.as_tensor(images), target=torch.as_tensor(ours.target))
    assert_close(ours.values, theirs.detach().numpy())


def test_input_x_gradient_of_a_linear_model_sums_to_the_score():
    # With no bias, f_t(x) = W[t]·x, so the attributions add up to the score exactly.
    torch.manual_seed(0)
    linear = nn.Linear(6, 3, bias=False).eval()
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    exp = explain(linear, x, "input_x_gradient", target=2)
    np.testing.assert_allclose(exp.values.sum(1), logits(linear, x)[:, 2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("base", ["saliency", "input_x_gradient", "ig"])
def test_smoothgrad_without_noise_is_its_base_method(resnet, images, base, one_thread):
    smooth = explain(resnet, images[:2], "smoothgrad", base=base, nt_samples=2, noise_level=0.0)
    assert_close(smooth.values, explain(resnet, images[:2], base).values)


def test_smoothgrad_averages_noisy_gradients(resnet, images):
    # The same noise drawn by hand: the mean of |gradient| over the noisy copies.
    x = torch.as_tensor(images)
    target = torch.as_tensor(explain(resnet, images, "saliency").target)
    flat = x.flatten(1)
    sigma = (0.2 * (flat.max(1).values - flat.min(1).values)).view(-1, 1, 1, 1)
    generator = torch.Generator().manual_seed(5)
    want = torch.zeros_like(x)
    for _ in range(4):
        noisy = (x + sigma * torch.randn(x.shape, generator=generator)).requires_grad_(True)
        score = resnet(noisy).gather(1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(score, noisy)
        want += grad.abs() / 4
    got = explain(resnet, images, "smoothgrad", nt_samples=4, noise_level=0.2, seed=5)
    assert_close(got.values, want.numpy())
    again = explain(resnet, images, "smoothgrad", nt_samples=4, noise_level=0.2, seed=5)
    np.testing.assert_array_equal(got.values, again.values)
    other = explain(resnet, images, "smoothgrad", nt_samples=4, noise_level=0.2, seed=6)
    assert not np.array_equal(got.values, other.values)


def test_gradcam_plusplus_weights_where_the_denominator_vanishes():
    # Before its ReLU a layer's activations can sum to S = -2; then g = 1 makes 2 g² + S g³ = 0,
    # and alpha is 0 there by definition. By hand: pixel 2 has alpha = 0.25 / (0.5 - 0.25) = 1,
    # so its share is 1 × ReLU(0.5); pixel 3's gradient is negative and counts for nothing.
    act = torch.tensor([-1.0, -1.0, 0.0]).view(1, 1, 3, 1)
    grads = torch.tensor([1.0, 0.5, -1.0]).view(1, 1, 3, 1)
    assert gradcam_plusplus_weights(act, grads).item() == pytest.approx(0.5)
