"""Attribution methods against captum, closed forms and hand-computed cases; errors; no side effects."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from torch import nn

from leanlens.errors import BadInput, BadOption, MissingCapability, UnknownMethod
from leanlens.explain import Explanation, explain, methods
from leanlens.models import SmallResNet

SIZE = 32  # SmallResNet takes any size: 32×32 inputs give 8×8 maps in stage3


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one intra-op thread than on two contending ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_resnet(seed: int = 4) -> SmallResNet:
    """A random SmallResNet in eval mode whose BatchNorms are not the identity."""
    torch.manual_seed(seed)
    model = SmallResNet(width=8)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                c = bn.num_features
                bn.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                bn.running_var.copy_(0.5 + torch.rand(c, generator=g))
                bn.weight.copy_(0.5 + torch.rand(c, generator=g))
                bn.bias.copy_(0.2 * torch.randn(c, generator=g))
    return model.eval()


def make_images(n: int = 4, seed: int = 0) -> np.ndarray:
    """Noise plus a bright Gaussian blob at a random place, (n, 1, SIZE, SIZE) float32."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, SIZE, SIZE, generator=g)
    yy, xx = torch.meshgrid(torch.arange(SIZE.__float__()), torch.arange(SIZE.__float__()), indexing="ij")
    for i in range(n):
        cy, cx = torch.randint(6, SIZE - 6, (2,), generator=g).tolist()
        x[i, 0] += 3 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20)
    return x.numpy()


@pytest.fixture(scope="module")
def resnet():
    return make_resnet()


@pytest.fixture(scope="module")
def images():
    return make_images()


def logits(model, x) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.array(x))).double().numpy()


def assert_close(got, want, rtol=1e-5, atol_rel=1e-5):
    """Elementwise close, with an absolute tolerance relative to the largest |want|."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    scale = max(np.abs(want).max(), 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_rel * scale)


# Integrated Gradients: completeness --------------------------------------------------

def smooth_baseline() -> np.ndarray:
    """A non-zero, one-sample-shaped baseline (a blurred noise field)."""
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(1, 1, SIZE, SIZE, generator=g)
    return (0.5 * F.avg_pool2d(noise, 5, stride=1, padding=2) + 0.3)[0].numpy()


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


# Targets ------------------------------------------------------------------------------

@pytest.fixture
def identity3():
    """Logits = x itself (3 classes), so the predicted class is the argmax of the input."""
    lin = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.diag(torch.tensor([1.0, 2.0, 3.0])))
    return lin


X3 = np.array([[0.0, 0.0, 1.0], [2.0, 0.5, 0.1], [0.1, 0.9, 0.2], [1.0, 0.0, 0.0]], dtype=np.float32)


def test_target_none_is_the_predicted_class(identity3):
    exp = explain(identity3, X3, "saliency", absolute=False)
    np.testing.assert_array_equal(exp.target, [2, 0, 1, 0])
    assert exp.target.dtype == np.int64
    np.testing.assert_allclose(exp.predictions, X3 * [1, 2, 3], rtol=1e-6)
    # the explanation really is of that class: the gradient is the weight row
    np.testing.assert_allclose(exp.values, np.diag([1.0, 2.0, 3.0])[[2, 0, 1, 0]])


@pytest.mark.parametrize("target, want", [
    (1, [1, 1, 1, 1]),
    (np.int32(2), [2, 2, 2, 2]),
    ([0, 2, 1, 0], [0, 2, 1, 0]),
    (np.array([2, 2, 0, 1]), [2, 2, 0, 1]),
    (torch.tensor([1, 0, 2, 2]), [1, 0, 2, 2]),
])
def test_target_int_or_one_a_sample(identity3, target, want):
    exp = explain(identity3, X3, "saliency", target=target, absolute=False)
    np.testing.assert_array_equal(exp.target, want)
    np.testing.assert_allclose(exp.values, np.diag([1.0, 2.0, 3.0])[want])
    np.testing.assert_allclose(exp.predictions, X3 * [1, 2, 3], rtol=1e-6)


# Errors: the right class, a clear one-line message --------------------------------------

def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def raised(cls, match, fn, *args, **kwargs):
    with pytest.raises(cls, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


def test_unknown_method_suggests_the_near_name(resnet, images):
    err = raised(UnknownMethod, r"'gradcam\+'", explain, resnet, images, "gradcam+")
    assert "'gradcam++'" in err.hint
    assert isinstance(err, ValueError)


def test_input_without_batch_axis(resnet, images):
    err = raised(BadInput, r"3 axes .* takes 4", explain, resnet, images[0], "saliency")
    assert "x[None]" in str(err)


def test_target_out_of_range(images):
    err = raised(BadInput, r"target 5 is out of range .* 2 classes", explain, make_resnet(), images, "saliency", target=5)
    assert "0..1" in err.hint


def test_target_wrong_length_or_dtype(identity3):
    raised(BadInput, r"3 entries for 4 samples", explain, identity3, X3, target=[0, 1, 2])
    raised(BadInput, r"class indices", explain, identity3, X3, target=1.0)


def test_nan_in_one_sample_names_it(resnet, images):
    x = images.copy()
    x[2, 0, 5, 7] = np.nan
    raised(BadInput, r"NaN .*sample 2\b", explain, resnet, x, "ig")


def test_unknown_option(resnet, images):
    err = raised(BadOption, r"no option 'step'", explain, resnet, images, "ig", step=8)
    assert "'steps'" in err.hint
    assert isinstance(err, TypeError)


def test_cam_on_a_model_without_spatial_layers():
    x = np.ones((2, 4), dtype=np.float32)
    for method in ("gradcam", "gradcam++"):
        raised(MissingCapability, r"no spatial layer", explain, mlp(), x, method)


def test_string_input(resnet):
    raised(BadInput, r"dtype <U.*not numbers", explain, resnet, np.array([["a", "b"]]), "saliency")


def test_bad_layer_name_has_a_hint(resnet, images):
    err = raised(BadInput, r"no layer named 'stage3\.relu3'", explain, resnet, images, "gradcam", layer="stage3.relu3")
    assert "'stage3.relu2'" in err.hint


def test_non_spatial_layer(resnet, images):
    raised(MissingCapability, r"'pool' does not output a spatial", explain, resnet, images, "gradcam", layer="pool")


def test_bad_ig_rule(resnet, images):
    err = raised(BadOption, r"unknown IG rule 'simpson'", explain, resnet, images, "ig", rule="simpson")
    assert "gausslegendre" in err.hint


def test_bad_ig_steps_and_baseline(resnet, images):
    raised(BadOption, r"steps=0", explain, resnet, images, "ig", steps=0)
    raised(BadOption, r"riemann_trapezoid needs steps >= 2", explain, resnet, images, "ig", steps=1,
           rule="riemann_trapezoid")
    raised(BadOption, r"baseline has shape \(3, 3\)", explain, resnet, images, "ig", baseline=np.zeros((3, 3)))


@pytest.mark.parametrize("batch_size", [0, -1])
def test_bad_ig_batch_size(resnet, images, batch_size):
    raised(BadOption, r"batch_size", explain, resnet, images, "ig", batch_size=batch_size)


@pytest.mark.parametrize("baseline", [np.float32(0.5), np.array(0.5)])
def test_ig_numpy_scalar_baseline(resnet, images, baseline):
    want = explain(resnet, images, "ig", steps=8, baseline=0.5)
    got = explain(resnet, images, "ig", steps=8, baseline=baseline)
    np.testing.assert_array_equal(got.values, want.values)


def test_ig_numpy_int_steps(resnet, images):
    want = explain(resnet, images, "ig", steps=8)
    got = explain(resnet, images, "ig", steps=np.int64(8))
    np.testing.assert_array_equal(got.values, want.values)


class ConvInplaceRelu(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.relu(self.conv(x)).mean(dim=(2, 3)))


def test_gradcam_on_a_layer_followed_by_an_inplace_relu(images):
    model = ConvInplaceRelu().eval()
    exp = explain(model, images, "gradcam", target=0, layer="conv")
    want = LayerGradCam(model, model.conv).attribute(torch.as_tensor(images), 0, relu_attributions=True)[:, 0].detach()
    assert_close(exp.layer_values, want.numpy())


# Explanation files and the method table ----------------------------------------------

def assert_same_explanation(a: Explanation, b: Explanation):
    assert a.method == b.method
    assert dict(a.options) == dict(b.options)
    for name in ("values", "target", "predictions", "delta", "layer_values"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None
        else:
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("method", ["ig", "gradcam++", "saliency"])
def test_npz_round_trip(resnet, images, tmp_path, method):
    exp = explain(resnet, images[:2], method, **({"steps": 8} if method == "ig" else {}))
    path = exp.to_npz(tmp_path / "expl.npz")
    back = Explanation.from_npz(path)
    assert_same_explanation(back, exp)
    assert (back.delta is None) == (method != "ig")
    assert (back.layer_values is None) == (method != "gradcam++")


def test_npz_summarises_array_options(resnet, images, tmp_path):
    exp = explain(resnet, images[:2], "ig", steps=4, baseline=smooth_baseline())
    back = Explanation.from_npz(exp.to_npz(tmp_path / "e.npz"))
    assert back.options["baseline"] == "<ndarray>"
    assert back.options["steps"] == 4
    np.testing.assert_array_equal(back.values, exp.values)


def test_npz_path_without_suffix(resnet, images, tmp_path):
    exp = explain(resnet, images[:1], "saliency")
    path = exp.to_npz(tmp_path / "expl")
    assert path.is_file()
    assert_same_explanation(Explanation.from_npz(path), exp)


def test_from_npz_refuses_other_files(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, values=np.zeros(3))
    raised(BadInput, r"not a leanlens explanation", Explanation.from_npz, other)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    raised(BadInput, r"cannot read explanation file", Explanation.from_npz, text)


def test_methods_table(resnet, images):
    table = methods()
    assert {"ig", "gradcam", "gradcam++", "saliency"} <= set(table)
    assert table["ig"].needs == {"gradients"} and table["saliency"].needs == {"gradients"}
    assert table["gradcam"].needs == {"gradients", "layers"} == table["gradcam++"].needs
    assert table["ig"].options == {"steps": 64, "rule": "gausslegendre", "baseline": 0.0, "batch_size": 128}
    assert table["saliency"].options == {"absolute": True}
    assert table["gradcam"].options == {"layer": None} == table["gradcam++"].options
    assert table["ig"].family == "gradient" and table["gradcam++"].family == "cam"
    assert all(spec.summary for spec in table.values())
    # an explanation records the defaults it ran with
    assert dict(explain(resnet, images[:1], "ig", steps=64).options) == table["ig"].options
    assert dict(explain(resnet, images[:1], "saliency").options) == table["saliency"].options


# The model is left as it was ------------------------------------------------------------

def all_hooks(model):
    return [h for m in model.modules() for h in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks) if h]


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "ig", "saliency"])
def test_model_left_unchanged(images, method):
    model = make_resnet()
    model.train()
    model.stem[0].weight.requires_grad_(False)  # a frozen layer stays frozen, the rest trainable
    state = {k: v.clone() for k, v in model.state_dict().items()}
    exp = explain(model, images, method, **({"steps": 8} if method == "ig" else {}))
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == [False] + [True] * (len(list(model.parameters())) - 1)
    assert all(p.grad is None for p in model.parameters())  # no weight gradients computed
    for k, v in model.state_dict().items():  # BatchNorm statistics not updated: ran in eval mode
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert all_hooks(model) == []
    # and it explained the eval-mode model
    np.testing.assert_allclose(exp.predictions, logits(make_resnet(), images), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call", [
    dict(method="gradcam", layer="pool"),  # raised inside the layer hook
    dict(method="gradcam++", layer="head"),  # raised inside the layer hook
    dict(method="gradcam", layer="unused"),  # the layer is never called
    dict(method="ig", rule="nope"),
    dict(method="gradcam", target=9),
])
def test_model_left_unchanged_after_an_error(images, call):
    model = make_resnet()
    model.unused = nn.Conv2d(1, 1, 1)
    model.train()
    with pytest.raises((BadInput, BadOption, MissingCapability)) as info:
        explain(model, images, **call)
    assert "\n" not in str(info.value)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert all_hooks(model) == []


def test_mlp_cam_error_leaves_no_hooks():
    model = mlp().train()
    with pytest.raises(MissingCapability):
        explain(model, np.ones((2, 4), dtype=np.float32), "gradcam++")
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all_hooks(model) == []
