"""The scikit-learn adapter on a real pipeline with a categorical column: raw columns as features,
categories decoded before the pipeline sees them, background rows for removed features, and
agreement with shap's KernelExplainer (exact at 2^d samples) on the same model, background and rows."""

import warnings

import numpy as np
import pandas as pd
import pytest
from errors_support import one_line
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_wine
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

import leanlens as ll
from leanlens.errors import BadInput, BadOption, MissingCapability
from leanlens.models.sklearn_model import SklearnModel

NUMERIC = ["alcohol", "malic_acid", "flavanoids", "color_intensity", "proline"]
HUE_LEVELS = np.array(["low", "mid", "high"], dtype=object)


@pytest.fixture(scope="module")
def wine():
    """Five numeric wine columns and a categorical one derived from the hue, three classes."""
    data = load_wine(as_frame=True)
    table = data.frame[NUMERIC].copy()
    table["hue_level"] = HUE_LEVELS[np.digitize(data.frame["hue"], [0.8, 1.0])]
    return table, data.target.to_numpy()


@pytest.fixture(scope="module")
def pipeline(wine):
    table, y = wine
    encode = ColumnTransformer([("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(), ["hue_level"])])
    return make_pipeline(encode, LogisticRegression(max_iter=1000)).fit(table, y)


@pytest.fixture(scope="module")
def rows(wine):
    table, _ = wine
    return table.iloc[[3, 75, 160]], table.iloc[::25]  # explained rows (one a class), background


def on_codes(pipeline):
    """The pipeline as a function of numbers for shap: the last column codes the hue level."""
    def scores(codes):
        table = pd.DataFrame(codes[:, :-1], columns=NUMERIC)
        table["hue_level"] = HUE_LEVELS[codes[:, -1].astype(int)]
        return pipeline.predict_proba(table)
    return scores


def codes_of(table):
    level = {name: k for k, name in enumerate(HUE_LEVELS)}
    return np.column_stack([table[NUMERIC].to_numpy(), table["hue_level"].map(level).to_numpy()]).astype(float)


def test_exact_shapley_on_raw_columns_equals_shap(pipeline, rows):
    import shap

    x, background = rows
    ours = ll.explain(pipeline, x, "shapley", background=background)
    assert ours.feature_names == (*NUMERIC, "hue_level")
    np.testing.assert_array_equal(ours.target, pipeline.predict_proba(x).argmax(1))
    # 2^6 samples: KernelExplainer enumerates every coalition of the 6 columns, its answer is exact
    # (shap's ExactExplainer agrees too, but compiles for 10-20 s on first use)
    explainer = shap.KernelExplainer(on_codes(pipeline), codes_of(background))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = explainer.shap_values(codes_of(x), nsamples=2**6, silent=True)
    np.testing.assert_allclose(ours.values, theirs[np.arange(len(x)), :, ours.target], atol=1e-6)
    # our base_values are shap's expected_value for the explained class: the background's mean score
    np.testing.assert_allclose(ours.base_values, np.asarray(explainer.expected_value)[ours.target], atol=1e-6)
    assert np.abs(ours.values[:, -1]).max() > 1e-3  # the categorical column matters, so it was really varied


def test_occlusion_takes_a_removed_column_from_each_background_row(pipeline, rows):
    x, background = rows
    exp = ll.explain(pipeline, x, "occlusion", background=background)
    clean = pipeline.predict_proba(x)[np.arange(len(x)), exp.target]
    for j, column in enumerate(exp.feature_names):
        hidden = [x.assign(**{column: value}) for value in background[column]]
        mean = np.mean([pipeline.predict_proba(h)[np.arange(len(x)), exp.target] for h in hidden], axis=0)
        np.testing.assert_allclose(exp.values[:, j], clean - mean, atol=1e-6)


@pytest.mark.parametrize("method", ["kernelshap", "lime"])
def test_every_forward_method_carries_the_column_names(pipeline, rows, method):
    x, background = rows
    exp = ll.explain(pipeline, x, method, background=background, samples=100)
    assert exp.values.shape == (3, 6) and exp.feature_names == (*NUMERIC, "hue_level")


def test_columns_in_another_order_are_matched_by_name(pipeline, rows):
    x, background = rows
    shuffled = ll.explain(pipeline, x[x.columns[::-1]], "shapley", background=background)
    straight = ll.explain(pipeline, x, "shapley", background=background)
    assert shuffled.feature_names == straight.feature_names[::-1]
    np.testing.assert_allclose(shuffled.values, straight.values[:, ::-1], atol=1e-6)


def test_scores_are_probabilities_margins_or_predictions():
    x = np.random.default_rng(0).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    svc = LinearSVC().fit(x, y)
    margin = svc.decision_function(x)
    np.testing.assert_allclose(ll.wrap(svc).predict(x), np.column_stack([-margin, margin]), rtol=1e-6)
    assert (ll.wrap(svc).predict(x).argmax(1) == svc.predict(x)).all()
    regressor = LinearRegression().fit(x, x @ [1.0, 2.0, 3.0])
    np.testing.assert_allclose(ll.wrap(regressor).predict(x), regressor.predict(x)[:, None], rtol=1e-6)
    # a linear regression's Shapley values against a zero baseline are its coefficients times x
    exp = ll.explain(regressor, x[:2], "shapley")
    np.testing.assert_allclose(exp.values, regressor.coef_ * x[:2], atol=1e-5)


def test_wrap_recognises_a_pipeline_as_forward_only(pipeline):
    model = ll.wrap(pipeline)
    assert isinstance(model, SklearnModel) and model.capabilities == {"black-box"}
    assert model.columns == (*NUMERIC, "hue_level") and model.score_method == "predict_proba"


# bad input: one line each ------------------------------------------------------------


class LabelsOnly(ClassifierMixin, BaseEstimator):
    def fit(self, x, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, x):
        return np.zeros(len(x), dtype=int)


def test_an_unfitted_estimator_is_refused():
    with pytest.raises(BadInput, match="the LogisticRegression is not fitted") as error:
        ll.wrap(LogisticRegression())
    assert "call .fit(X, y)" in one_line(error)


def test_a_classifier_without_scores_is_refused():
    with pytest.raises(MissingCapability, match="a LabelsOnly gives class labels only") as error:
        ll.wrap(LabelsOnly().fit(np.zeros((2, 1)), [0, 1]))
    assert "predict_proba or decision_function" in one_line(error)


@pytest.mark.parametrize("method", ["saliency", "ig", "gradcam"])
def test_a_gradient_method_is_refused_naming_the_forward_methods(pipeline, rows, method):
    with pytest.raises(MissingCapability, match=f"method '{method}' needs gradients") as error:
        ll.explain(pipeline, rows[0], method)
    assert "'kernelshap', 'lime', 'occlusion', 'shapley'" in one_line(error)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns=["proline"]), r"x lacks the column\(s\) 'proline' that the model was fit on"),
    (lambda t: t.assign(extra=1.0), r"x has column\(s\) 'extra' that the model was not fit on"),
    (lambda t: t.assign(alcohol=[13.0, np.nan, 12.0]), r"x has a missing or infinite value in column 'alcohol' \(row 1\)"),
    (lambda t: t.assign(hue_level=["low", None, "mid"]), r"x has a missing or infinite value in column 'hue_level' \(row 1\)"),
    (lambda t: t.assign(proline=[500.0, 600.0, np.inf]), r"x has a missing or infinite value in column 'proline' \(row 2\)"),
    (lambda t: t.assign(proline=pd.Timestamp("2026-01-01")), r"column 'proline' has dtype datetime64"),
])
def test_a_table_that_does_not_fit_the_pipeline_is_refused(pipeline, rows, change, message):
    with pytest.raises(BadInput, match=message) as error:
        ll.explain(pipeline, change(rows[0]), "occlusion", background=rows[1])
    one_line(error)


def test_a_target_out_of_range_is_refused(pipeline, rows):
    with pytest.raises(BadInput, match="target 3 is out of range for a model with 3 classes") as error:
        ll.explain(pipeline, rows[0], "occlusion", target=3, background=rows[1])
    one_line(error)


def test_categories_without_background_rows_are_refused(pipeline, rows):
    with pytest.raises(BadOption, match=r"x has categorical column\(s\) 'hue_level' and no background rows") as error:
        ll.explain(pipeline, rows[0], "shapley")
    assert "pass background=" in one_line(error)
    with pytest.raises(BadOption, match="background is a ndarray while x is a DataFrame") as error:
        ll.explain(pipeline, rows[0], "shapley", background=codes_of(rows[1]))
    one_line(error)


def test_numbers_where_the_pipeline_expects_categories_are_refused(pipeline, rows):
    with pytest.raises(BadInput, match="the Pipeline refused the batch: ") as error:
        ll.wrap(pipeline).predict(codes_of(rows[0]))
    assert "pass a DataFrame with the columns and dtypes" in one_line(error)


def test_an_array_of_the_wrong_width_is_refused():
    regressor = LinearRegression().fit(np.ones((4, 3)), np.arange(4.0))
    with pytest.raises(BadInput, match="x has 2 features but the LinearRegression was fit on 3") as error:
        ll.explain(regressor, np.ones((2, 2)), "occlusion")
    one_line(error)
