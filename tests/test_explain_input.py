"""Inputs that used to give a silent wrong answer or a raw traceback in explain() and attribute()."""

import io
import json

import numpy as np
import pytest
import torch
from errors_support import one_line
from explain_support import make_images, make_resnet
from torch import nn

import leanlens as ll
from leanlens.errors import BadInput
from leanlens.explain import Explanation


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("edit", ["conv weight scaled in place", "running_var replaced", "bn weight scaled in place"])
@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_fold_bn_sees_weights_edited_through_data(edit, method, one_thread):
    model, images = make_resnet(), make_images(3)
    ll.explain(model, images, method, fold_bn=True)  # the folded copy of the weights as they were
    with torch.no_grad():
        if edit == "conv weight scaled in place":  # .data bypasses the parameter's version counter
            model.stage3.conv1.weight.data.mul_(2)
        elif edit == "running_var replaced":
            model.stage3.bn1.running_var.data = 4 * model.stage3.bn1.running_var.clone()
        else:
            model.stem[1].weight.data.mul_(-1)
    plain = ll.explain(model, images, method).values
    close(ll.explain(model, images, method, fold_bn=True).values, plain)


def unix_time_model() -> nn.Module:
    """Class 0 after 1 700 000 040 s (a float64 model), class 1 before: float32 cannot tell 50 s apart."""
    model = nn.Linear(1, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0], [0.0]]))
        model.bias.copy_(torch.tensor([-1_700_000_040.0, 0.0], dtype=torch.float64))
    return model.eval()


@pytest.mark.parametrize("method", ["saliency", "ig", "occlusion", "kernelshap"])
def test_a_float64_model_explains_float64_inputs_unrounded(method):
    x = np.array([[1_700_000_050.0], [1_700_000_030.0]])  # float32 rounds both to 1 700 000 000
    assert np.float32(x[0, 0]) == np.float32(x[1, 0])
    exp = ll.explain(unix_time_model(), x, method)
    np.testing.assert_array_equal(exp.target, [0, 1])
    np.testing.assert_allclose(exp.predictions, [[10.0, 0.0], [-10.0, 0.0]])
    tensor = ll.attribute(unix_time_model(), torch.as_tensor(x), method)
    assert tensor.dtype == torch.float64 or method == "kernelshap"  # Shapley maps are float32 by design
    np.testing.assert_allclose(exp.values, tensor.numpy())


@pytest.mark.parametrize("x", [np.ones((2, 6)) * (1 + 2j), torch.ones(2, 6, dtype=torch.complex64)],
                         ids=["numpy", "tensor"])
@pytest.mark.parametrize("entry", [ll.explain, ll.attribute])
def test_complex_inputs_are_refused(x, entry):
    model = nn.Sequential(nn.Linear(6, 2))
    with pytest.raises(BadInput, match="not real numbers") as error:
        entry(model, x, "saliency")
    assert "real part" in one_line(error)


def test_attribute_checks_a_tensor_without_reading_uninitialised_memory():
    model, x = nn.Sequential(nn.Linear(6, 2)), torch.ones(4, 6)
    for _ in range(50):  # leave freed NaN blocks of every small size where NumPy reallocates
        for n in range(1, 9):
            del_me = np.full(n, np.nan, dtype=np.float32)
            del del_me
        ll.attribute(model, x, "saliency")
    with pytest.raises(BadInput, match=r"expected a non-empty batch"):
        ll.attribute(model, torch.ones(0, 6), "saliency")


@pytest.fixture
def saved(tmp_path):
    exp = ll.explain(nn.Sequential(nn.Linear(6, 2)), np.ones((2, 6), dtype=np.float32), "saliency")
    return exp, exp.to_npz(tmp_path / "exp.npz")


def rewrite(path, **arrays):
    with np.load(path) as f:
        kept = {k: f[k] for k in f.files}
    kept.update(arrays)
    np.savez(path, **{k: v for k, v in kept.items() if v is not None})


def as_header(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8)


def npy_bytes(array: np.ndarray) -> bytes:
    """What np.save writes for `array` (a .npy file), under a name that says .npz."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_text("not a zip"), "cannot read explanation file"),
    (lambda p: p.write_bytes(p.read_bytes()[:60]), "cannot read explanation file"),
    (lambda p: p.write_bytes(npy_bytes(np.zeros(3))), "holds one array, not an .npz archive"),
    (lambda p: rewrite(p, header=as_header("{method: 'x'")), "no JSON header"),
    (lambda p: rewrite(p, header=as_header(json.dumps({"method": "saliency"}))), "no JSON header"),
    (lambda p: rewrite(p, header=as_header(json.dumps(["saliency", {}]))), "no JSON header"),
    (lambda p: rewrite(p, header=np.array([1.5])), "no JSON header"),
    (lambda p: rewrite(p, values=None), "no values array"),
    (lambda p: rewrite(p, extra=np.zeros(2)), "unknown arrays extra"),
    (lambda p: rewrite(p, target=np.array(["a", "b"])), "'target' holds <U1, not numbers"),
    (lambda p: rewrite(p, values=np.array([{"a": 1}], dtype=object)), "cannot read explanation file"),
], ids=["text", "truncated", "npy", "not-json", "no-options", "json-list", "float-header", "no-values",
        "extra-array", "text-array", "object-array"])
def test_a_malformed_explanation_file_is_one_line(saved, damage, message):
    _, path = saved
    damage(path)
    with pytest.raises(BadInput, match=message.replace("(", r"\(")) as error:
        Explanation.from_npz(path)
    assert "hint: load only files written by Explanation.to_npz()" in one_line(error)


def test_a_saved_explanation_still_loads(saved):
    exp, path = saved
    back = Explanation.from_npz(path)
    np.testing.assert_array_equal(back.values, exp.values)
    assert back.method == "saliency" and back.options == dict(exp.options)


def test_a_misspelt_method_is_reported_before_the_batch():
    """The README's example: one sample without its batch axis and a typo in the method name."""
    model = torch.nn.Linear(4, 2)
    for call in (ll.explain, ll.attribute):
        with pytest.raises(ll.UnknownMethod, match="did you mean 'gradcam\\+\\+'"):
            call(model, np.zeros(4, dtype=np.float32), method="gradcam+")


def test_saving_into_a_missing_folder_is_one_line(tmp_path):
    exp = ll.explain(torch.nn.Linear(4, 2), np.ones((2, 4), np.float32), "saliency")
    with pytest.raises(BadInput, match="cannot write .*folder exists"):
        exp.to_npz(tmp_path / "no" / "such" / "folder" / "exp.npz")
