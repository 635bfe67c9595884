"""Every forward-only method on every adapter: the same function wrapped by each gives the same
attributions (an adapter that scored wrongly, permuted classes or dropped a softmax would not),
and the NumPy function's own attributions equal hand-computed oracles with the same background."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from adapters_support import (
    BACKGROUND,
    FORWARD_METHODS,
    KERAS_BACKENDS,
    X,
    keras_results,
    numpy_mlp,
    sklearn_mlp,
    torch_mlp,
)
from errors_support import one_line

import leanlens as ll
from leanlens.compression.onnx_export import to_onnx
from leanlens.models import OnnxModel

COLUMNS = [f"f{j}" for j in range(X.shape[1])]


def frame(rows: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def frame_function(batch):
    """The MLP as a function of DataFrames: refuses anything but the user's columns."""
    assert isinstance(batch, pd.DataFrame) and list(batch.columns) == COLUMNS
    return numpy_mlp(batch.to_numpy())


ADAPTERS = {  # name -> (model, x, background)
    "torch": lambda: (torch_mlp(), X, BACKGROUND),
    "onnx": lambda: (OnnxModel(to_onnx(torch_mlp(), torch.as_tensor(X))), X, BACKGROUND),
    "sklearn": lambda: (sklearn_mlp(), X, BACKGROUND),
    "callable on DataFrames": lambda: (frame_function, frame(X), frame(BACKGROUND)),
    "torch on DataFrames": lambda: (torch_mlp(), frame(X), frame(BACKGROUND)),
}


@pytest.fixture(scope="module")
def reference():
    """The NumPy function's attributions, each method with its options and the background."""
    return {method: ll.explain(numpy_mlp, X, method, background=BACKGROUND, **options)
            for method, options in FORWARD_METHODS.items()}


@pytest.mark.parametrize("method", FORWARD_METHODS)
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_adapter_gives_the_functions_attributions(adapter, method, reference):
    model, x, background = ADAPTERS[adapter]()
    exp = ll.explain(model, x, method, background=background, **FORWARD_METHODS[method])
    np.testing.assert_array_equal(exp.target, reference[method].target)
    np.testing.assert_allclose(exp.predictions, numpy_mlp(X), atol=1e-6)
    np.testing.assert_allclose(exp.values, reference[method].values, atol=1e-6)
    assert exp.feature_names == (tuple(COLUMNS) if isinstance(x, pd.DataFrame) else None)


@pytest.mark.parametrize("backend", KERAS_BACKENDS)
@pytest.mark.parametrize("method", FORWARD_METHODS)
def test_keras_gives_the_functions_attributions(method, backend, reference):
    keras = keras_results(backend)
    np.testing.assert_allclose(keras[f"forward/{method}"], reference[method].values, atol=1e-6)


def test_the_function_s_shapley_values_and_occlusion_equal_the_background_oracles(reference):
    """Shapley values of the game v(S) = mean over background rows b of f(x_S, b_rest), by the
    subset formula; occlusion's drop for a feature is f(x) - mean_b f(x with that feature from b)."""
    target = reference["shapley"].target
    d = X.shape[1]

    def value(i, subset):
        keep = np.isin(np.arange(d), subset)
        return numpy_mlp(np.where(keep, X[i], BACKGROUND))[:, target[i]].mean()

    shapley = np.zeros_like(X, dtype=np.float64)
    occlusion = np.zeros_like(shapley)
    for i, j in itertools.product(range(len(X)), range(d)):
        others = [k for k in range(d) if k != j]
        for size in range(d):
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for subset in itertools.combinations(others, size):
                shapley[i, j] += weight * (value(i, [*subset, j]) - value(i, list(subset)))
        occlusion[i, j] = value(i, list(range(d))) - value(i, others)
    np.testing.assert_allclose(reference["shapley"].values, shapley, atol=1e-6)
    np.testing.assert_allclose(reference["occlusion"].values, occlusion, atol=1e-6)
    # shap's base_values: the mean background score, and efficiency closes the sum to f(x)
    base = numpy_mlp(BACKGROUND)[:, target].mean(0)
    np.testing.assert_allclose(reference["shapley"].base_values, base, atol=1e-6)
    np.testing.assert_allclose(base + shapley.sum(1), numpy_mlp(X)[np.arange(len(X)), target], atol=1e-6)


def test_a_function_of_dataframes_gets_raw_categories_and_their_shapley_values():
    """score = amount + 2·[city == 'paris']: the city's Shapley value against a background is
    2·([x is paris] - share of paris in the background), the amount's is x - mean(background)."""
    seen = []

    def score(batch):
        seen.append(batch)
        return np.column_stack([batch["amount"] + 2.0 * (batch["city"] == "paris"), np.zeros(len(batch))])

    x = pd.DataFrame({"amount": [3, 1], "city": ["paris", "oslo"]})
    background = pd.DataFrame({"amount": [0, 2, 4, 2], "city": ["oslo", "paris", "lima", "lima"]})
    exp = ll.explain(score, x, "shapley", background=background, target=0)
    assert exp.feature_names == ("amount", "city")
    np.testing.assert_allclose(exp.values, [[3 - 2, 2 * (1 - 0.25)], [1 - 2, 2 * (0 - 0.25)]], atol=1e-6)
    np.testing.assert_allclose(exp.base_values, [2 + 0.5] * 2, atol=1e-6)
    for batch in seen:  # the user's columns and dtypes, the cities as strings
        assert list(batch.columns) == ["amount", "city"] and batch["amount"].dtype == np.int64
        assert set(batch["city"]) <= {"paris", "oslo", "lima"}


def test_feature_names_and_base_values_survive_a_file(tmp_path):
    exp = ll.explain(frame_function, frame(X), "kernelshap", background=frame(BACKGROUND), samples=40)
    back = ll.Explanation.from_npz(exp.to_npz(tmp_path / "e"))
    assert back.feature_names == tuple(COLUMNS)
    np.testing.assert_array_equal(back.base_values, exp.base_values)


@pytest.mark.parametrize("method", ["occlusion", "shapley"])
@pytest.mark.parametrize("options, message", [
    ({"background": BACKGROUND[:, :4]}, r"background has shape \(5, 4\) for inputs of shape \(3, 6\)"),
    ({"background": BACKGROUND * np.nan}, "background has NaN or inf"),
    ({"background": BACKGROUND.astype(str)}, "background has dtype <U"),
    ({"background": BACKGROUND, "baseline": "mean"}, "baseline and background are both set"),
])
def test_a_background_that_cannot_serve_is_refused(method, options, message):
    with pytest.raises(ll.BadOption, match=message) as error:
        ll.explain(numpy_mlp, X, method, **options)
    one_line(error)


def test_categories_for_a_model_that_takes_only_numbers_are_refused():
    x = frame(X).assign(f5=["a", "b", "a"])
    with pytest.raises(ll.BadInput, match=r"a torch model cannot take the categorical column\(s\) 'f5'") as error:
        ll.explain(torch_mlp(), x, "occlusion", background=x)
    assert "encode them as numbers first" in one_line(error)
