"""Attribution methods against captum, closed forms and hand-computed cases."""

import copy

import numpy as np
import pytest
import torch
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


class PoolSum(nn.Module):
    """4×4 input → 2×2 average pool → score 0 = the pool's sum: Grad-CAM's map is the pooled image."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        total = self.pool(x).sum(dim=(1, 2, 3))
        return torch.stack([total, -total], 1)


def test_gradcam_values_are_the_layer_map_upsampled_bilinearly():
    """A 2×2 map [[0, 4], [8, 12]] upsampled to 4×4 with half-pixel centres (align_corners=False):
    output pixel i samples the map at i/2 - 1/4, clamped to [0, 1], so each axis interpolates
    with weights (1, 0), (3/4, 1/4), (1/4, 3/4), (0, 1). Worked out by hand."""
    blocks = np.array([[0.0, 4.0], [8.0, 12.0]], dtype=np.float32)
    x = np.kron(blocks, np.ones((2, 2), dtype=np.float32))[None, None]  # pools back to `blocks`
    exp = explain(PoolSum(), x, "gradcam", target=0, layer="pool")
    # Grad-CAM: one channel whose gradient is 1 everywhere, so weight 1 and the map is the pooled x.
    np.testing.assert_array_equal(exp.layer_values[0], blocks)
    by_hand = np.array([[0, 1, 3, 4],
                        [2, 3, 5, 6],
                        [6, 7, 9, 10],
                        [8, 9, 11, 12]], dtype=np.float32)
    np.testing.assert_allclose(exp.values[0], by_hand, rtol=0, atol=1e-6)


def test_gradcam_values_have_the_inputs_spatial_shape(resnet, images):
    exp = explain(resnet, images, "gradcam", target=1)
    assert exp.values.shape == (4, SIZE, SIZE) and exp.layer_values.shape == (4, SIZE // 4, SIZE // 4)


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


class SpatialHead(nn.Module):
    """conv → ReLU → 2×2 max-pool → tanh → linear over every position: ∂score/∂A varies per pixel
    (zero off each window's maximum, and a position-dependent weight times tanh' elsewhere)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.pool(self.relu(self.conv(x)))).flatten(1))


def textbook_gradcam_plusplus(model, x, targets):
    """Grad-CAM++ as Chattopadhyay et al. (2018) write it, eq. 19 with S = exp(score):
    α = g² / (2 g² + Σ_ab A_ab g³) per pixel (0 where that is 0/0), w_k = Σ_ij α ReLU(g),
    map = ReLU(Σ_k w_k A_k); A and g = ∂score/∂A taken here with a hook, in float64."""
    model = copy.deepcopy(model).double()
    captured = {}
    model.relu.register_forward_hook(lambda m, i, out: captured.update(act=out))
    scores = model(torch.as_tensor(x, dtype=torch.float64))
    act = captured["act"]
    (g,) = torch.autograd.grad(scores[torch.arange(len(x)), torch.as_tensor(targets)].sum(), act)
    a, g = act.detach().numpy(), g.numpy()
    denominator = 2 * g**2 + a.sum(axis=(2, 3), keepdims=True) * g**3
    alpha = np.divide(g**2, denominator, out=np.zeros_like(g), where=denominator != 0)
    weights = (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
    return np.maximum(np.einsum("nk,nkij->nij", weights, a), 0), g


def test_gradcam_plusplus_textbook_oracle_where_the_gradient_varies_over_the_map():
    torch.manual_seed(6)
    model = SpatialHead().eval()
    with torch.no_grad():
        model.conv.bias.fill_(0.2)  # most pixels alive after the ReLU
    x = make_images(3, seed=8)[:, :, :8, :8]
    targets = [0, 1, 1]
    want, g = textbook_gradcam_plusplus(model, x, targets)
    positive = g[g > 0]
    assert positive.std() > 0.3 * positive.mean() and (g == 0).mean() > 0.5  # really varies per pixel
    assert want.max() > 0 and (want == 0).mean() < 0.5
    got = explain(model, x, "gradcam++", target=targets, layer="relu")
    assert_close(got.layer_values, want, rtol=1e-5, atol_rel=1e-5)


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


@pytest.mark.parametrize("method, options", [
    ("saliency", {}), ("input_x_gradient", {}), ("smoothgrad", {"nt_samples": 2}), ("gradcam", {}),
    ("gradcam++", {}), ("occlusion", {"window": 16, "stride": 16}), ("shapley", {"superpixel": 16}),
    ("kernelshap", {"superpixel": 16, "samples": 10}), ("lime", {"superpixel": 8, "samples": 30}),
    ("ig", {"steps": 4}),
])
def test_batch_size_bounds_every_pass(resnet, images, method, options, one_thread):
    """`batch_size` is the most inputs the model sees at once: what keeps a large batch in memory."""
    seen = []
    handle = resnet.register_forward_pre_hook(lambda module, inputs: seen.append(len(inputs[0])))
    try:
        explain(resnet, images, method, batch_size=3, **options)
    finally:
        handle.remove()
    assert len(images) == 4 and seen and max(seen) <= 3, seen


@pytest.mark.parametrize("method, options", [
    ("occlusion", {"window": 16, "stride": 16}), ("kernelshap", {"superpixel": 16, "samples": 10}),
    ("lime", {"superpixel": 8, "samples": 30}),
])
def test_batch_size_bounds_every_pass_of_a_black_box(resnet, images, method, options):
    """The same for a black box, whose own predict() also picks the class to explain."""
    seen = []

    def model(x):
        seen.append(len(x))
        return resnet(torch.as_tensor(x)).detach().numpy()

    explain(model, images, method, batch_size=3, **options)
    assert seen and max(seen) <= 3, seen


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


def test_smoothgrad_repeats_with_its_seed(resnet, images):
    got = explain(resnet, images, "smoothgrad", nt_samples=4, seed=5, noise_level=0.2)
    again = explain(resnet, images, "smoothgrad", nt_samples=4, seed=5, noise_level=0.2)
    np.testing.assert_array_equal(got.values, again.values)
    other = explain(resnet, images, "smoothgrad", nt_samples=4, seed=6, noise_level=0.2)
    assert not np.array_equal(got.values, other.values)


NOISY_DRAWS = 3000


@pytest.fixture(scope="module")
def bumpy():
    """A small tanh network whose gradient changes a lot within the noise: smoothing matters."""
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 3)).eval()
    with torch.no_grad():
        model[0].weight *= 2
    raw = torch.randn(3, 6, generator=torch.Generator().manual_seed(10))
    low, high = raw.min(1, keepdim=True).values, raw.max(1, keepdim=True).values
    x = 6 * (raw - low) / (high - low) - 3  # each sample spans [-3, 3]: a range far from 1
    return model, x.numpy()


def captum_smoothgrad(model, x, target, sigma, squared=False):
    """Captum's NoiseTunnel over |gradient| for one sample: noise N(0, sigma²), sigma absolute."""
    from captum.attr import NoiseTunnel

    torch.manual_seed(0)  # Captum draws from the global generator
    return NoiseTunnel(Saliency(model)).attribute(
        torch.as_tensor(x[None]), nt_type="smoothgrad_sq" if squared else "smoothgrad", nt_samples=NOISY_DRAWS,
        nt_samples_batch_size=NOISY_DRAWS, stdevs=sigma, target=target)[0].numpy().astype(np.float64)


def assert_same_expectation(ours, model, x, target, sigma):
    """Two independent means of |gradient| over NOISY_DRAWS draws each differ, element by element,
    by N(0, 2 var / n) (central limit theorem); var = E|g|² - (E|g|)² from Captum's own moments.
    Six standard deviations on 18 elements: a false alarm about once in 10^7 runs."""
    theirs = captum_smoothgrad(model, x, target, sigma)
    variance = np.maximum(captum_smoothgrad(model, x, target, sigma, squared=True) - theirs**2, 0)
    spread = np.sqrt(2 * variance / NOISY_DRAWS)
    assert np.all(np.abs(ours - theirs) <= 6 * spread + 1e-6), np.abs(ours - theirs) / spread
    return theirs, spread


def test_smoothgrad_stdevs_means_what_captum_means(bumpy):
    """`stdevs` is Captum's: one absolute noise σ, whatever the sample's range."""
    model, x = bumpy
    for i in range(len(x)):
        ours = explain(model, x[i : i + 1], "smoothgrad", target=1, nt_samples=NOISY_DRAWS, stdevs=0.5, seed=i)
        theirs, spread = assert_same_expectation(ours.values[0], model, x[i], 1, 0.5)
        # not vacuous: the same 0.5 read as a fraction of the range is far off
        relative = captum_smoothgrad(model, x[i], 1, 0.5 * float(np.ptp(x[i])))
        assert (np.abs(relative - theirs) / spread).max() > 12


def test_smoothgrad_relative_noise_equals_captum_with_sigma_scaled_by_the_range(bumpy):
    """`noise_level` (formerly `stdev`) is a fraction of each sample's range (max - min), as in the paper."""
    model, x = bumpy
    for i in range(len(x)):
        ours = explain(model, x[i : i + 1], "smoothgrad", target=2, nt_samples=NOISY_DRAWS, seed=i,
                       noise_level=0.2)
        theirs, spread = assert_same_expectation(ours.values[0], model, x[i], 2, 0.2 * float(np.ptp(x[i])))
        # not vacuous: the same 0.2 read as an absolute sigma is far off
        assert (np.abs(captum_smoothgrad(model, x[i], 2, 0.2) - theirs) / spread).max() > 12


def test_gradcam_plusplus_weights_where_the_denominator_vanishes():
    # Before its ReLU a layer's activations can sum to S = -2; then g = 1 makes 2 g² + S g³ = 0,
    # and alpha is 0 there by definition. By hand: pixel 2 has alpha = 0.25 / (0.5 - 0.25) = 1,
    # so its share is 1 × ReLU(0.5); pixel 3's gradient is negative and counts for nothing.
    act = torch.tensor([-1.0, -1.0, 0.0]).view(1, 1, 3, 1)
    grads = torch.tensor([1.0, 0.5, -1.0]).view(1, 1, 3, 1)
    assert gradcam_plusplus_weights(act, grads).item() == pytest.approx(0.5)
