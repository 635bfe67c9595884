"""explain(): targets, errors for every user mistake, files, the method table, no side effects."""

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from explain_support import assert_close, logits, make_resnet, smooth_baseline
from torch import nn

from leanlens.errors import BadInput, BadOption, MissingCapability, UnknownMethod
from leanlens.explain import Explanation, explain, methods

pytestmark = pytest.mark.usefixtures("one_thread")


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
    err = raised(BadInput, r"cannot take a batch of shape \(N, 32, 32\) \(3 axes\): expected 4D input", explain, resnet, images[0],
                 "saliency")
    assert "x[None]" in str(err)


def test_target_out_of_range(images):
    err = raised(BadInput, r"target 5 is out of range .* 2 classes", explain, make_resnet(), images, "saliency", target=5)
    assert "0..1" in err.hint


def test_target_wrong_length_or_dtype(identity3):
    raised(BadInput, r"shape \(3,\) for 4 samples", explain, identity3, X3, target=[0, 1, 2])
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
    assert table["ig"].options == {"steps": None, "rule": None, "baseline": "zeros", "tol": None, "max_steps": 257,
                                    "feature_tol": None,
                                    "batch_size": None, "memory": None, "seed": 0, "create_graph": False,
                                    "fold_bn": False}
    assert table["saliency"].options == {"absolute": True, "batch_size": None, "create_graph": False, "fold_bn": False}
    assert table["gradcam"].options == {"layer": None, "batch_size": None, "create_graph": False, "fold_bn": False}
    assert table["gradcam"].options == table["gradcam++"].options
    assert table["ig"].family == "gradient" and table["gradcam++"].family == "cam"
    assert all(spec.summary for spec in table.values())
    # an explanation records the defaults it ran with
    assert dict(explain(resnet, images[:1], "ig").options) == {**table["ig"].options, "rule": "gausslegendre"}
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
    {"method": "gradcam", "layer": "pool"},  # raised inside the layer hook
    {"method": "gradcam++", "layer": "head"},  # raised inside the layer hook
    {"method": "gradcam", "layer": "unused"},  # the layer is never called
    {"method": "ig", "rule": "nope"},
    {"method": "gradcam", "target": 9},
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


def test_bad_smoothgrad_options(resnet, images):
    raised(BadOption, r"nt_samples=0", explain, resnet, images, "smoothgrad", nt_samples=0)
    raised(BadOption, r"noise_level=-0.1", explain, resnet, images, "smoothgrad", noise_level=-0.1)
