"""Edges a demanding user reaches: other dtypes, inference mode, and option values of the wrong kind."""

import numpy as np
import pytest
import torch
from torch import nn

import leanlens as ll
from leanlens.compression.onnx_export import to_onnx
from leanlens.errors import BadInput, BadOption
from leanlens.models import OnnxModel

X = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)


def mlp(dtype=torch.float32):
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype).eval()


@pytest.mark.parametrize("method, options", [("saliency", {}), ("occlusion", {}), ("kernelshap", {"samples": 40})])
def test_a_float64_model_is_explained_in_float64(method, options):
    model = mlp(torch.float64)
    exp = ll.explain(model, X, method, **options)
    assert exp.predictions.dtype == np.float32
    np.testing.assert_allclose(exp.predictions, model(torch.as_tensor(X, dtype=torch.float64)).detach().numpy(), rtol=1e-6)
    same = ll.attribute(model, torch.as_tensor(X, dtype=torch.float64), method, **options)
    assert same.dtype == torch.float64 or method == "kernelshap"  # Shapley maps are float32 by design
    assert exp.values.dtype == same.numpy().dtype  # explain() keeps the precision attribute() computed in
    np.testing.assert_allclose(exp.values, same.numpy(), rtol=1e-6)


def test_a_float64_model_keeps_ig_completeness_to_float64_precision():
    model = mlp(torch.float64)
    exp = ll.explain(model, X, "ig", steps=64)
    scores = model(torch.as_tensor(X, dtype=torch.float64)).detach().numpy()
    at_zero = model(torch.zeros(1, X.shape[1], dtype=torch.float64)).detach().numpy()[0]
    gap = scores[np.arange(len(X)), exp.target] - at_zero[exp.target]
    # float32 storage alone would leave errors near 1e-7 of the scores
    np.testing.assert_allclose(exp.values.sum(1), gap, rtol=0, atol=1e-12)


def test_gradient_methods_work_inside_inference_mode():
    model = mlp()
    outside = ll.attribute(model, torch.as_tensor(X), "ig", steps=8)
    with torch.inference_mode():
        inside = ll.attribute(model, torch.as_tensor(X), "ig", steps=8)
    torch.testing.assert_close(inside, outside)


@pytest.mark.parametrize("method, options, message", [
    ("smoothgrad", {"seed": 1.5}, "seed=1.5"),
    ("ig", {"baseline": "uniform", "seed": "a"}, "seed='a'"),
    ("saliency", {"create_graph": "no"}, "create_graph='no'"),
    ("saliency", {"absolute": 1}, "absolute=1"),
    ("smoothgrad", {"noise_level": float("nan")}, "noise_level=nan"),
    ("smoothgrad", {"noise_level": True}, "noise_level=True"),
    ("smoothgrad", {"stdevs": -1.0}, "stdevs=-1.0"),
    ("smoothgrad", {"stdevs": 0.1, "noise_level": 0.2}, "both noise_level and stdevs"),
    ("kernelshap", {"samples": 1}, "samples=1"),
    ("lime", {"alpha": float("inf")}, "alpha=inf"),
    ("ig", {"baseline": None}, "baseline of type NoneType"),
    ("ig", {"baseline": np.array(["a"] * 6)}, "baseline of type ndarray"),
    ("occlusion", {"baseline": float("nan")}, "baseline has NaN"),
])
def test_option_values_of_the_wrong_kind_are_refused(method, options, message):
    with pytest.raises(BadOption, match=message.replace("(", r"\(").replace(".", r"\.")):
        ll.explain(mlp(), X, method, **options)


def test_cam_layer_must_be_a_name(resnet, images):
    with pytest.raises(BadOption, match="layer=3"):
        ll.explain(resnet, images, "gradcam", layer=3)


def test_an_onnx_model_refuses_a_batch_of_the_wrong_shape(tmp_path):
    path = tmp_path / "mlp.onnx"
    path.write_bytes(to_onnx(mlp(), torch.as_tensor(X[:1])))
    model = OnnxModel(path)
    with pytest.raises(BadInput, match=r"x has shape \(5, 4\) but the ONNX model takes \(N, 6\)"):
        ll.explain(model, X[:, :4], "occlusion")
    with pytest.raises(BadInput, match="axes"):
        ll.explain(model, X[:, :, None], "occlusion")


def test_mixed_train_and_eval_modes_and_frozen_layers_come_back_as_they_were():
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3)).eval()
    model[1].train()  # a user's mix: dropout left in train mode under an eval root
    model[0].weight.requires_grad_(False)
    first = ll.explain(model, X, "saliency").values
    assert np.array_equal(first, ll.explain(model, X, "saliency").values)  # dropout was off
    assert [m.training for m in model.modules()] == [False, False, True, False]
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True]


def test_an_onnx_models_own_predictions_choose_the_targets_its_twin_explains(tmp_path):
    from leanlens.models import TorchModel

    deployed, stand_in = mlp(), mlp()
    with torch.no_grad():
        stand_in[2].bias += torch.tensor([0.0, 0.0, 50.0])  # the stand-in alone would always pick class 2
    path = tmp_path / "deployed.onnx"
    path.write_bytes(to_onnx(deployed, torch.as_tensor(X[:1])))
    model = OnnxModel(path, twin=TorchModel(stand_in))
    exp = ll.explain(model, X, "saliency")
    want = deployed(torch.as_tensor(X)).detach().numpy()
    np.testing.assert_allclose(exp.predictions, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(exp.target, want.argmax(1))
    assert (exp.target != 2).any()


def test_smoothgrad_stdevs_is_absolute_and_noise_level_a_fraction_of_the_range():
    x = X[:1]
    value_range = float(x.max() - x.min())
    absolute = ll.explain(mlp(), x, "smoothgrad", stdevs=0.3, nt_samples=8).values
    relative = ll.explain(mlp(), x, "smoothgrad", noise_level=0.3 / value_range, nt_samples=8).values
    np.testing.assert_allclose(absolute, relative, rtol=1e-5)  # the same noise, the same sigma
    default = ll.explain(mlp(), x, "smoothgrad", nt_samples=8).values
    np.testing.assert_array_equal(default, ll.explain(mlp(), x, "smoothgrad", noise_level=0.15, nt_samples=8).values)
    assert not np.allclose(default, absolute)
