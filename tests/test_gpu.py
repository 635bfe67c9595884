"""Every method on a CUDA model gives the CPU's answer (skipped where there is no GPU, as in CI)."""

import numpy as np
import pytest
import torch
from explain_support import make_images, make_resnet

import leanlens as ll

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [
    ("saliency", {}), ("input_x_gradient", {}), ("ig", {"steps": 16, "batch_size": 24}),
    ("ig", {"steps": 8, "baseline": "blur"}), ("gradcam", {}), ("gradcam++", {}),
    ("occlusion", {"window": 8, "stride": 4}), ("shapley", {"superpixel": 16}),
    ("kernelshap", {"superpixel": 8, "samples": 64}), ("lime", {"superpixel": 8, "samples": 64}),
]


@pytest.fixture(autouse=True)
def exact_convolutions():
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # TF32 would round to ~1e-3: compare like with like
    yield
    torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("method, options", CASES)
def test_cuda_equals_cpu(method, options):
    images = make_images(3)
    cpu = ll.explain(make_resnet(), images, method, **options)
    gpu = ll.explain(make_resnet().cuda(), images, method, **options)
    np.testing.assert_array_equal(gpu.target, cpu.target)
    scale = np.abs(cpu.values).max()
    np.testing.assert_allclose(gpu.values, cpu.values, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("method, options", [("smoothgrad", {"nt_samples": 4}), ("ig", {"baseline": "uniform"})])
def test_cuda_randomness_is_seeded_on_the_device(method, options):
    model, images = make_resnet().cuda(), make_images(2)
    first = ll.explain(model, images, method, seed=3, **options).values
    np.testing.assert_array_equal(first, ll.explain(model, images, method, seed=3, **options).values)
    assert not np.array_equal(first, ll.explain(model, images, method, seed=4, **options).values)


def test_cuda_attribute_trains_through_gradcam():
    model = make_resnet().cuda()
    x = torch.as_tensor(make_images(2)).cuda()
    ll.attribute(model, x, "gradcam", create_graph=True).pow(2).sum().backward()
    assert model.stage3.conv2.weight.grad.abs().sum() > 0


def test_cuda_autocast_is_close_to_float32():
    model, images = make_resnet().cuda(), make_images(3)
    exact = ll.explain(model, images, "ig", steps=16).values
    fast = ll.explain(model, images, "ig", steps=16, autocast=True).values
    np.testing.assert_allclose(fast, exact, atol=0.05 * np.abs(exact).max())
