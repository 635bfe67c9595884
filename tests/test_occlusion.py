"""Occlusion: equal to Captum's Occlusion, on torch and black-box ONNX models."""

import numpy as np
import pytest
import torch
from captum.attr import Occlusion
from explain_support import assert_close, smooth_baseline
from torch import nn

import leanlens as ll
from leanlens.compression.onnx_export import to_onnx
from leanlens.models import OnnxModel


def captum_occlusion(module, x, target, window, stride, baseline=0.0):
    base = baseline if np.ndim(baseline) == 0 else torch.as_tensor(baseline)[None]
    return Occlusion(module).attribute(
        torch.as_tensor(x), sliding_window_shapes=window, strides=stride, baselines=base,
        target=torch.as_tensor(target), perturbations_per_eval=64,
    ).numpy()


@pytest.fixture(scope="module")
def tabular():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1)).numpy()
    return model, x


@pytest.mark.parametrize("window, stride", [(8, 4), (5, 3)])  # tiles exactly / last window cut at the edge
@pytest.mark.parametrize("baseline", ["zeros", "array"])
@pytest.mark.parametrize("target", [None, [1, 0, 1, 0]])
def test_equals_captum_on_images(resnet, images, one_thread, window, stride, baseline, target):
    base = smooth_baseline() if baseline == "array" else "zeros"
    exp = ll.explain(resnet, images, "occlusion", target=target, window=window, stride=stride, baseline=base)
    if target is not None:
        assert exp.target.tolist() == target
    want = captum_occlusion(resnet, images, exp.target, (1, window, window), (1, stride, stride),
                            0.0 if baseline == "zeros" else base)
    assert exp.values.shape == images.shape
    assert_close(exp.values, want)


def test_full_tuple_window_equals_int_window(resnet, images, one_thread):
    by_int = ll.explain(resnet, images, "occlusion", target=0, window=5, stride=3)
    by_tuple = ll.explain(resnet, images, "occlusion", target=0, window=(1, 5, 5), stride=(1, 3, 3))
    np.testing.assert_array_equal(by_int.values, by_tuple.values)


@pytest.mark.parametrize("window, stride", [((1,), (1,)), ((2,), (1,)), (3, 2)])
def test_equals_captum_on_tabular(tabular, one_thread, window, stride):
    model, x = tabular
    exp = ll.explain(model, x, "occlusion", window=window, stride=stride)
    as_tuple = (lambda v: v if isinstance(v, tuple) else (v,))
    assert_close(exp.values, captum_occlusion(model, x, exp.target, as_tuple(window), as_tuple(stride)))


def test_single_feature_occlusion_is_the_score_drop(tabular, one_thread):
    model, x = tabular
    exp = ll.explain(model, x, "occlusion", target=2, window=(1,), stride=(1,), baseline=0.5)
    with torch.no_grad():
        clean = model(torch.as_tensor(x))[:, 2]
        want = np.zeros_like(x)
        for j in range(x.shape[1]):
            hidden = torch.as_tensor(x).clone()
            hidden[:, j] = 0.5
            want[:, j] = (clean - model(hidden)[:, 2]).numpy()
    assert_close(exp.values, want)
    # The default window on flat inputs is one feature, the default stride the window.
    assert_close(ll.explain(model, x, "occlusion", target=2, baseline=0.5).values, want)


def test_black_box_onnx_model(resnet, images, one_thread, tmp_path):
    path = tmp_path / "resnet.onnx"
    path.write_bytes(to_onnx(resnet, torch.as_tensor(images[:1])))
    onnx_model = OnnxModel(path)  # no twin: only predict() is available
    got = ll.explain(onnx_model, images, "occlusion", window=8, stride=8, baseline=smooth_baseline())
    want = ll.explain(resnet, images, "occlusion", target=got.target, window=8, stride=8, baseline=smooth_baseline())
    assert_close(got.values, want.values, rtol=1e-4, atol_rel=1e-4)
    with pytest.raises(ll.MissingCapability):
        ll.explain(onnx_model, images, "saliency")


def test_batch_size_does_not_change_the_result(resnet, images, one_thread):
    runs = [ll.explain(resnet, images, "occlusion", target=1, window=8, stride=4, batch_size=b).values
            for b in (None, 7, 256)]
    assert_close(runs[1], runs[0])
    assert_close(runs[2], runs[0])


@pytest.mark.parametrize("options, message", [
    ({"window": 33}, "larger than the sample"),
    ({"window": (1, 8, 40)}, "larger than the sample"),
    ({"window": 8, "stride": 0}, "stride=0"),
    ({"window": 8, "stride": -2}, "stride=-2"),
    ({"window": (8, 8)}, "has 2 sizes"),
    ({"window": 8, "stride": (1, 4)}, "has 2 sizes"),
    ({"window": 4, "stride": 5}, "leaving gaps"),
    ({"window": "big"}, "window='big'"),
    ({"window": 8, "batch_size": 0}, "batch_size=0"),
])
def test_bad_options(resnet, images, options, message):
    with pytest.raises(ll.BadOption, match=message) as error:
        ll.explain(resnet, images, "occlusion", **options)
    assert error.value.hint


def test_listed_as_a_black_box_method():
    spec = ll.methods()["occlusion"]
    assert spec.family == "perturbation" and not spec.needs
    assert spec.options == {"window": None, "stride": None, "baseline": "zeros", "background": None, "batch_size": 256,
                            "seed": 0}
