"""attribute(): tensors out, and with create_graph=True a loss on them reaches the weights."""

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
