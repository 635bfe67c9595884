"""The Model contract: a new adapter plugs in without explain/, shapes are judged by the real
forward, outputs that are not a tensor give their logits, and ONNX files load as saved."""

import ast
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from errors_support import one_line
from explain_support import make_images, make_resnet
from torch import nn

import leanlens as ll
from leanlens.compression.onnx_export import to_onnx
from leanlens.errors import BadInput, BadOption, MissingCapability
from leanlens.models import (
    BLACK_BOX,
    CallableModel,
    DifferentiableModel,
    Model,
    OnnxModel,
    TorchModel,
)

W = np.array([[2.0, -1.0, 0.0], [3.0, 1.0, -2.0], [-1.0, 4.0, 1.0], [0.0, -3.0, 5.0]])  # 4 features, 3 classes
X = np.array([[1.0, 2.0, -1.0, 3.0], [-2.0, 0.0, 4.0, 1.0]], dtype=np.float32)
BASE = np.array([0.5, -1.0, 1.0, 2.0], dtype=np.float32)


def linear(x: np.ndarray) -> np.ndarray:
    return x @ W


@pytest.mark.parametrize("method, options", [("occlusion", {}), ("kernelshap", {}), ("shapley", {})])
def test_a_plain_function_is_explained_as_a_black_box(method, options):
    exp = ll.explain(linear, X, method, baseline=BASE, **options)
    target = (X @ W).argmax(1)
    np.testing.assert_array_equal(exp.target, target)
    np.testing.assert_allclose(exp.predictions, X @ W, rtol=1e-6)
    # For a linear score, every feature's share is its weight times its distance from the baseline.
    np.testing.assert_allclose(exp.values, W[:, target].T * (X - BASE), rtol=1e-5, atol=1e-5)


def test_a_function_is_a_black_box_and_gradient_methods_say_so():
    model = ll.wrap(linear)
    assert isinstance(model, CallableModel) and isinstance(model, Model)
    assert model.capabilities == {BLACK_BOX}
    for name, spec in ll.methods().items():
        if spec.needs:
            with pytest.raises(MissingCapability, match=f"method '{re.escape(name)}' needs") as error:
                ll.explain(linear, X, name)
            assert "hint: use a black-box method" in one_line(error)


def test_a_black_box_has_no_size_and_a_fingerprint_of_its_own():
    from sklearn.linear_model import LogisticRegression

    from leanlens.audit.profile import Cost, cost, fingerprint

    y = (X @ W).argmax(1)
    fits = [LogisticRegression(C=c).fit(X, y) for c in (1.0, 0.01)]
    prints = {fingerprint(fn) for fn in (linear, lambda x: x @ W, lambda x: x @ W * 2,
                                         fits[0].predict_proba, fits[1].predict_proba)}
    assert len(prints) == 5 and all(p.startswith("fn-") for p in prints)
    assert fingerprint(fits[0].predict_proba) == fingerprint(LogisticRegression(C=1.0).fit(X, y).predict_proba)
    assert cost(linear, X) == Cost(params=None, macs=None, bytes=None)


@pytest.mark.parametrize("fn, message", [
    (lambda x: x.sum(1), r"returned shape \(2,\) for 2 samples"),
    (lambda x: np.array([["a", "b"]] * len(x)), r"returned <U1 values"),
])
def test_a_function_returning_no_scores_is_refused(fn, message):
    with pytest.raises(BadInput, match=message) as error:
        ll.explain(fn, X, "occlusion")
    one_line(error)


ADAPTERS = {"TorchModel", "OnnxModel", "CallableModel", "SklearnModel", "KerasModel", "torch_model", "onnx_model",
            "callable_model", "sklearn_model", "keras_model"}


def test_explain_routes_on_capabilities_not_on_adapters():
    """No name, attribute or string under explain/ reaches an adapter or its module, and no test
    there reads the framework: a new adapter plugs in without an edit there. Read from the syntax
    tree, so an alias, a getattr(model, "module") or `framework in (...)` is caught too."""
    source = Path(ll.explain.__code__.co_filename).parent
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = set()
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
            elif isinstance(node, ast.ImportFrom):
                names.update((node.module or "").split("."))
                names.update(a.name for a in node.names)
            hits = names & (ADAPTERS | {"module"})
            assert not hits, f"{path.name}:{node.lineno} reaches {sorted(hits)}"
            if isinstance(node, (ast.Compare, ast.Match)):  # `framework` may be named in messages, never tested
                tested = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                assert "framework" not in tested, f"{path.name}:{node.lineno} routes on the framework name"


class LinearFirst(nn.Module):
    """Registers its Linear before its conv: a guess from registration order says 'rank 2'."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(4, 3)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).mean(dim=(2, 3)))


def test_a_model_whose_linear_comes_first_is_explained():
    model, x = LinearFirst().eval(), make_images(2)[:, :, :8, :8]
    exp = ll.explain(model, x, "saliency", absolute=False)
    inputs = torch.as_tensor(x).requires_grad_(True)
    scores = model(inputs)
    scores.gather(1, scores.argmax(1, keepdim=True)).sum().backward()
    np.testing.assert_allclose(exp.values, inputs.grad.numpy(), rtol=1e-6)
    assert ll.explain(model, x, "gradcam").values.shape == (2, 8, 8)


@pytest.mark.parametrize("method", sorted(ll.methods()))
def test_a_wrong_channel_count_is_one_line_for_every_method(method):
    three_channels = np.ones((2, 3, 16, 16), dtype=np.float32)  # the SmallResNet takes one channel
    with pytest.raises(BadInput, match=r"cannot take a batch of shape \(N, 3, 16, 16\) \(4 axes\): Given groups=1") as error:
        ll.explain(make_resnet(), three_channels, method)
    assert "hint: pass a batch (N, ...) of the shape the model was built for" in one_line(error)


def test_a_wrong_width_in_predict_and_attribute_is_one_line():
    model = nn.Sequential(nn.Linear(6, 3))
    with pytest.raises(BadInput, match=r"shape \(N, 4\) \(2 axes\): mat1 and mat2 shapes cannot be multiplied"):
        ll.wrap(model).predict(np.ones((5, 4), dtype=np.float32))
    with pytest.raises(BadInput, match=r"shape \(N, 4\)"):
        ll.attribute(model, torch.ones(5, 4), "ig")


class ManyOutputs(nn.Module):
    """One network, its logits returned bare, in a tuple, a dict or a Hugging Face-style output."""

    def __init__(self, style: str):
        super().__init__()
        torch.manual_seed(2)
        self.body, self.style = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), style

    def forward(self, x):
        logits = self.body(x)
        features = 10 * logits.flip(1)  # a decoy with another argmax
        if self.style == "tuple":
            return logits, features
        if self.style == "dict":
            return {"features": features, "logits": logits}
        if self.style == "model_output":  # transformers' ModelOutput is an OrderedDict with attributes
            out = OrderedDict(logits=logits, hidden=features)
            return type("ModelOutput", (OrderedDict,), {"logits": property(lambda self: self["logits"])})(out)
        if self.style == "attribute":
            return type("Output", (), {"logits": logits, "hidden": features})()
        return logits


@pytest.mark.parametrize("style", ["tuple", "dict", "model_output", "attribute"])
@pytest.mark.parametrize("method", ["ig", "occlusion"])
def test_the_logits_a_model_returns_are_explained(style, method):
    bare = ManyOutputs("bare").eval()
    wrapped = ManyOutputs(style).eval()
    want = ll.explain(bare, X, method)
    got = ll.explain(wrapped, X, method)
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.target, want.target)
    np.testing.assert_array_equal(ll.wrap(wrapped).predict(X), ll.wrap(bare).predict(X))


@pytest.mark.parametrize("style, output", [("tuple", 1), ("dict", "features"), ("attribute", "hidden"),
                                           ("tuple", lambda out: out[1])])
def test_output_picks_another_part(style, output):
    model = ll.wrap(ManyOutputs(style).eval(), output=output)
    want = 10 * ll.wrap(ManyOutputs("bare").eval()).predict(X)[:, ::-1]
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-6)
    np.testing.assert_array_equal(ll.explain(model, X, "saliency").target, want.argmax(1))


def test_outputs_without_scores_are_one_line():
    text = nn.Module()
    text.forward = lambda x: ["not", "scores"]
    with pytest.raises(BadInput, match=r"the model returns a list, not a tensor of scores") as error:
        ll.explain(text, X, "saliency")
    assert "ll.wrap(model, output=...)" in one_line(error)
    with pytest.raises(BadInput, match=r"output='probs' names nothing .* its keys are 'features', 'logits'"):
        ll.wrap(ManyOutputs("dict"), output="probs").predict(X)
    with pytest.raises(BadInput, match=r"output=2 names nothing .* index below 2"):
        ll.explain(ll.wrap(ManyOutputs("tuple"), output=2), X, "saliency")
    with pytest.raises(BadOption, match=r"output=2\.5"):
        ll.wrap(ManyOutputs("tuple"), output=2.5)
    with pytest.raises(BadOption, match=r"output= applies to torch modules"):
        ll.wrap(linear, output=0)


def test_adapters_declare_the_protocols_they_implement():
    torch_model = ll.wrap(ManyOutputs("bare"))
    assert isinstance(torch_model, DifferentiableModel) and not torch_model.stand_in
    assert not isinstance(ll.wrap(linear), DifferentiableModel)


@pytest.fixture(scope="module")
def onnx_bytes():
    return to_onnx(ManyOutputs("bare"), torch.as_tensor(X[:1]))


def test_an_upper_case_onnx_suffix_loads(onnx_bytes, tmp_path):
    path = tmp_path / "model.ONNX"
    path.write_bytes(onnx_bytes)
    model = ll.wrap(str(path))
    assert isinstance(model, OnnxModel)
    np.testing.assert_allclose(model.predict(X), ll.wrap(ManyOutputs("bare")).predict(X), rtol=1e-5, atol=1e-6)


def test_an_onnx_file_with_external_data_loads(onnx_bytes, tmp_path):
    graph = onnx.load_from_string(onnx_bytes)
    path = tmp_path / "model.onnx"
    onnx.save(graph, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size > 0 and path.stat().st_size < len(onnx_bytes)
    model = ll.wrap(path)
    want = ll.wrap(ManyOutputs("bare")).predict(X)
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-5, atol=1e-6)
    # The bytes it keeps are self-contained: they load with the data files gone.
    (tmp_path / "weights.bin").unlink()
    np.testing.assert_allclose(OnnxModel(model.model_bytes).predict(X), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(BadInput, match=r"cannot read the external data of model\.onnx") as error:
        ll.wrap(path)
    one_line(error)


def test_an_onnx_file_whose_weights_cannot_be_one_graph_is_refused_before_reading(onnx_bytes, tmp_path, monkeypatch):
    from leanlens.models import onnx_model

    path = tmp_path / "model.onnx"
    onnx.save(onnx.load_from_string(onnx_bytes), path, save_as_external_data=True, location="weights.bin",
              size_threshold=0)
    # the real cap is protobuf's 2 GiB; a lower one stands in for a file that size
    monkeypatch.setattr(onnx_model, "PROTOBUF_LIMIT", len(onnx_bytes) // 2)
    with pytest.raises(BadInput, match="protobuf caps at 2 GiB") as error:
        ll.wrap(path)
    one_line(error)


def test_an_onnx_model_without_twin_has_no_gradients_and_with_one_delegates(onnx_bytes):
    alone = OnnxModel(onnx_bytes)
    with pytest.raises(MissingCapability, match="'ig' needs gradients"):
        ll.explain(alone, X, "ig")
    twin = TorchModel(ManyOutputs("bare"))
    paired = OnnxModel(onnx_bytes, twin=twin)
    assert isinstance(paired, DifferentiableModel) and paired.stand_in
    assert paired.capabilities == twin.capabilities
    np.testing.assert_allclose(ll.explain(paired, X, "ig").values, ll.explain(twin, X, "ig").values, rtol=1e-5,
                               atol=1e-6)
