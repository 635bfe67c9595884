"""attribute(): tensors out, and with create_graph=True a loss on them reaches the weights."""

import contextlib

import numpy as np
import pytest
import torch
from explain_support import make_images, make_resnet
from torch import nn

import leanlens as ll
from leanlens.errors import BadOption


def test_attribute_equals_explain_and_carries_no_graph_by_default(resnet, images, one_thread):
    values = ll.attribute(resnet, torch.as_tensor(images), "ig", steps=16)
    assert isinstance(values, torch.Tensor) and values.grad_fn is None and not values.requires_grad
    np.testing.assert_allclose(values.numpy(), ll.explain(resnet, images, "ig", steps=16).values, rtol=1e-5, atol=1e-6)


def test_input_x_gradient_of_a_linear_model_differentiates_to_the_inputs():
    # attribution = x * W[t], so d(sum of attributions)/dW[t] = sum of the x explained for class t.
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x = torch.randn(4, 5)
    target = torch.tensor([0, 2, 2, 1])
    ll.attribute(model, x, "input_x_gradient", target=target, create_graph=True).sum().backward()
    want = torch.zeros(3, 5).index_add_(0, target, x)
    torch.testing.assert_close(model.weight.grad, want)
    assert model.weight.requires_grad and model.training  # restored as they were


def _finite_difference(model, parameter, loss, eps=1e-6):
    """d loss / d parameter[0, ...first entry] by central differences, in float64."""
    index = (0,) * parameter.dim()
    with torch.no_grad():
        parameter[index] += eps
        up = loss().item()
        parameter[index] -= 2 * eps
        down = loss().item()
        parameter[index] += eps
    return (up - down) / (2 * eps)


@pytest.mark.parametrize("method, options", [
    ("saliency", {"absolute": False}),
    ("ig", {"steps": 8}),
    ("ig", {"tol": 1e-2, "max_steps": 33}),  # refined: both samples stop at a half level, 13 points
    ("gradcam", {}),
    ("gradcam++", {}),
    ("smoothgrad", {"nt_samples": 3, "base": "input_x_gradient"}),
])
def test_create_graph_gradient_matches_finite_differences(method, options, one_thread):
    model = make_resnet().double()
    x = torch.as_tensor(make_images(2)).double()
    target = torch.tensor([0, 1])
    weight = model.stage3.conv2.weight  # a late conv: every method's output depends on it

    def loss():
        values = ll.attribute(model, x, method, target=target, create_graph=True, **options)
        return (values.double() ** 2).sum()

    loss().backward()
    analytic = weight.grad[(0,) * weight.dim()].item()
    numeric = _finite_difference(model, weight, loss)
    assert analytic != 0
    assert analytic == pytest.approx(numeric, rel=1e-4)


def test_attribute_keeps_a_tensor_on_its_device_and_checks_it(resnet, images):
    x = torch.tensor(images)  # a copy: the fixture is shared
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(ll.BadInput, match="NaN or inf in sample 1"):
        ll.attribute(resnet, x, "saliency")
    with pytest.raises(ll.BadInput, match="axes"):
        ll.attribute(resnet, x[0], "saliency")


def test_autocast_runs_in_bfloat16_close_to_float32(resnet, images, one_thread):
    exact = ll.explain(resnet, images, "gradcam").values
    fast = ll.explain(resnet, images, "gradcam", autocast=True).values
    assert fast.dtype == np.float32
    assert not np.array_equal(fast, exact)  # it really ran in lower precision
    np.testing.assert_allclose(fast, exact, atol=0.05 * np.abs(exact).max())
    with pytest.raises(BadOption, match="autocast='yes'"):
        ll.explain(resnet, images, "gradcam", autocast="yes")


def norm_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@contextlib.contextmanager
def norms_called(model):
    """The batch size of every forward of the user's own BatchNorm modules inside the block."""
    norms = norm_layers(model)
    assert len(norms) > 2
    called = []
    # A folded copy is a deep copy (hooks included): a norm it kept would be another object
    # running this hook, so the hook checks which module it ran on.
    handles = [bn.register_forward_hook(lambda m, i, o: called.append(len(i[0])) if any(m is b for b in norms) else None)
               for bn in norms]
    try:
        yield called
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("method, options", [("ig", {"steps": 16}), ("saliency", {}), ("smoothgrad", {"nt_samples": 2})])
def test_fold_bn_computes_the_same_attributions_from_a_copy(method, options, one_thread):
    model = make_resnet()
    images = make_images(3)
    with norms_called(model) as unfolded_calls:
        plain = ll.explain(model, images, method, **options)
    with norms_called(model) as folded_calls:
        folded = ll.explain(model, images, method, fold_bn=True, **options)
    assert unfolded_calls
    if method == "smoothgrad":  # its targets come from one pass of the model itself on the clean batch
        assert folded_calls == [len(images)] * len(norm_layers(model))
    else:
        assert not folded_calls  # the copy ran, not the user's model
    np.testing.assert_allclose(folded.values, plain.values, rtol=1e-4, atol=1e-5 * np.abs(plain.values).max())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the user's model kept its norms


def test_fold_bn_follows_changed_weights_and_refuses_create_graph(resnet, images):
    from leanlens.models.torch_folding import gradient_module

    model = make_resnet()
    first = gradient_module(model)
    assert gradient_module(model) is first  # kept while the weights stay the same
    assert not any(isinstance(m, nn.BatchNorm2d) for m in first.modules())
    with torch.no_grad():
        model.stage3.bn2.running_mean += 0.5  # an in-place change, as an optimizer or a BN update makes
    assert gradient_module(model) is not first
    x = torch.as_tensor(images)
    torch.testing.assert_close(gradient_module(model)(x), model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(BadOption, match="fold_bn=True with create_graph=True"):
        ll.attribute(model, x, "saliency", fold_bn=True, create_graph=True)


def test_fold_bn_on_an_untraceable_model_falls_back_to_the_model():
    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.head = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(2, 2)

        def forward(self, x):
            h = self.bn(self.conv(x)).mean(dim=(2, 3))
            return self.head(h) if h.sum() > 0 else -self.head(h)

    model = Branchy().eval()
    x = make_images(2)[:, :, :8, :8]
    np.testing.assert_allclose(ll.explain(model, x, "ig", steps=8, fold_bn=True).values,
                               ll.explain(model, x, "ig", steps=8).values, rtol=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_fold_bn_cam_on_a_relu_runs_the_folded_copy(method, resnet, images, one_thread):
    with norms_called(resnet) as unfolded_calls:
        plain = ll.explain(resnet, images, method, layer="stage3.relu2")
    with norms_called(resnet) as folded_calls:
        folded = ll.explain(resnet, images, method, layer="stage3.relu2", fold_bn=True)
    assert unfolded_calls and not folded_calls
    np.testing.assert_allclose(folded.values, plain.values, rtol=1e-4, atol=1e-5 * np.abs(plain.values).max())
    assert plain.layer_values.max() > 0


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
@pytest.mark.parametrize("layer", ["stage3", "stage3.conv2"])  # a block the trace inlines, a conv whose BN folds
def test_fold_bn_cam_falls_back_to_the_model_where_the_copy_has_no_such_layer(method, layer, resnet, images, one_thread):
    """The documented fallback: the user's model runs (its norms too), so the maps are bit-equal."""
    with norms_called(resnet) as unfolded_calls:
        plain = ll.explain(resnet, images, method, layer=layer)
    with norms_called(resnet) as folded_calls:
        folded = ll.explain(resnet, images, method, layer=layer, fold_bn=True)
    assert len(folded_calls) == len(unfolded_calls) > 0
    np.testing.assert_array_equal(folded.values, plain.values)
    np.testing.assert_array_equal(folded.layer_values, plain.layer_values)
