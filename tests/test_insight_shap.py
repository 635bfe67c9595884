"""Shapley values of tabular models: exact TreeSHAP for tree ensembles, KernelSHAP against a background."""

import numpy as np
import pandas as pd
import pytest
from errors_support import one_line
from insight_support import interventional_shapley
from sklearn.compose import make_column_transformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

import leanlens as ll
from leanlens.errors import BadInput, MissingCapability
from leanlens.insight import credit_applications, tree_shap
from leanlens.insight.kernel import kernel_shap
from leanlens.insight.scorer import prepare


@pytest.fixture(scope="module")
def tabular():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4))
    y = (x[:, 0] + 0.8 * x[:, 1] * x[:, 2] + 0.3 * rng.normal(size=240) > 0).astype(int)
    return x, y


@pytest.mark.parametrize("model", [
    RandomForestClassifier(n_estimators=8, max_depth=3, random_state=0),
    ExtraTreesClassifier(n_estimators=8, max_depth=3, random_state=0),
    DecisionTreeClassifier(max_depth=4, random_state=0),
    GradientBoostingClassifier(n_estimators=15, max_depth=2, random_state=0),
], ids=lambda m: type(m).__name__)
def test_base_plus_contributions_is_the_models_output_for_the_explained_class(tabular, model):
    x, y = tabular
    model.fit(x, y)
    for background in (None, x[:12]):
        target = np.arange(10) % 2  # both classes, row by row
        result = tree_shap(model, x[:10], background=background, target=target)
        if result.space == "log-odds":  # gradient boosting: class 0's log-odds are class 1's negated
            expected = model.decision_function(x[:10]) * np.where(target == 1, 1, -1)
        else:
            expected = model.predict_proba(x[:10])[np.arange(10), target]
        np.testing.assert_allclose(result.output, expected, atol=1e-6)
        assert result.method == "treeshap" and result.values.shape == (10, 4)


@pytest.mark.parametrize("model, space", [
    (RandomForestClassifier(n_estimators=5, max_depth=3, random_state=1), "probability"),
    (GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=1), "log-odds"),
], ids=["forest", "boosting"])
def test_interventional_treeshap_equals_brute_force_shapley_over_the_background(tabular, model, space):
    x, y = tabular
    model.fit(x, y)
    background = x[-8:]
    result = tree_shap(model, x[:6], background=background, target=1)
    f = (lambda rows: model.predict_proba(rows)[:, 1]) if space == "probability" else model.decision_function
    np.testing.assert_allclose(result.values, interventional_shapley(f, x[:6], background), atol=1e-6)
    np.testing.assert_allclose(result.base_values, f(background).mean(), atol=1e-6)
    assert result.space == space


def test_treeshap_of_a_regressor_agrees_with_shap(tabular):
    shap = pytest.importorskip("shap")
    x, _ = tabular
    model = GradientBoostingRegressor(n_estimators=10, max_depth=2, random_state=0).fit(x, x[:, 0] - x[:, 3])
    ours = tree_shap(model, x[:20])
    theirs = shap.TreeExplainer(model)(x[:20])
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-6)
    assert ours.space == "raw"


def _boosted(library: str, n_classes: int):
    """An XGBClassifier or LGBMClassifier of a few shallow trees, skipped where the library is missing."""
    module = pytest.importorskip(library, reason=f"{library} is not installed here")
    if library == "xgboost":
        return module.XGBClassifier(n_estimators=10, max_depth=2)
    return module.LGBMClassifier(n_estimators=10, num_leaves=4, min_child_samples=5, verbose=-1)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_xgboost_and_lightgbm_treeshap_equal_shap_and_add_up_to_their_margins(tabular, library, n_classes):
    shap = pytest.importorskip("shap")
    x, y = tabular
    labels = y if n_classes == 2 else np.digitize(x[:, 0], [-0.5, 0.5])
    model = _boosted(library, n_classes).fit(x, labels)
    target = np.arange(8) % n_classes
    margins = model.predict(x[:8], output_margin=True) if library == "xgboost" else model.predict(x[:8], raw_score=True)
    for background in (None, x[:12]):
        ours = tree_shap(model, x[:8], background=background, target=target)
        how = "tree_path_dependent" if background is None else "interventional"
        theirs = np.asarray(shap.TreeExplainer(model, data=background, feature_perturbation=how)(x[:8]).values)
        rows = np.arange(8)
        if n_classes == 2:  # one margin: class 1's log-odds, class 0's its negative
            sign = np.where(target == 1, 1.0, -1.0)
            np.testing.assert_allclose(ours.values, theirs * sign[:, None], atol=1e-6)
            np.testing.assert_allclose(ours.output, margins * sign, atol=1e-5)
        else:
            np.testing.assert_allclose(ours.values, theirs[rows, :, target], atol=1e-6)
            np.testing.assert_allclose(ours.output, margins[rows, target], atol=1e-5)
        assert ours.space == ("log-odds" if n_classes == 2 else "logit")


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_xgboost_and_lightgbm_are_wrapped_by_their_probabilities_and_give_reason_codes(library):
    frame = credit_applications(400, seed=2).drop(columns=["employment", "defaulted"])
    refused = (frame["debt_ratio"] > 0.45).astype(int)  # the lender's rule: debt alone decides
    model = _boosted(library, 2).fit(frame, refused)
    wrapped = ll.wrap(model)
    assert wrapped.score_method == "predict_proba"
    np.testing.assert_allclose(wrapped.predict(frame.iloc[:5]), model.predict_proba(frame.iloc[:5]), atol=1e-6)
    codes = ll.reasons(model, frame, top=3)
    refusals = codes.decisions == 1
    assert codes.method == "treeshap" and refusals.sum() > 50
    assert (np.array(codes.feature_names)[codes.features[refusals, 0]] == "debt_ratio").mean() >= 0.95


def _applicants(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"income": rng.normal(50, 15, n), "debt": rng.uniform(0, 1, n),
                         "job": rng.choice(["none", "part", "full"], n)})


def test_kernelshap_of_a_pipeline_with_categories_is_exact_shapley_in_the_raw_columns():
    frame = _applicants(200, 0)
    y = ((frame["debt"] > 0.5) | (frame["job"] == "none")).astype(int)
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), ["job"]), remainder="passthrough"),
                         LogisticRegression(max_iter=500)).fit(frame, y)
    scorer, table, background = prepare(pipe, frame.iloc[:5], frame.iloc[100:106])
    result = kernel_shap(scorer, table, background, target=1)

    jobs = np.array(table.categories[2], dtype=object)  # the codes are the sorted categories

    def f(codes):
        rows = pd.DataFrame({"income": codes[:, 0], "debt": codes[:, 1], "job": jobs[codes[:, 2].astype(int)]})
        return pipe.predict_proba(rows)[:, 1]

    np.testing.assert_allclose(result.values, interventional_shapley(f, table.matrix, background.matrix), atol=2e-6)
    np.testing.assert_allclose(result.output, pipe.predict_proba(frame.iloc[:5])[:, 1], atol=2e-6)
    assert list(jobs) == ["full", "none", "part"]


def test_a_model_without_trees_or_with_text_columns_is_refused_for_treeshap(tabular):
    x, y = tabular
    with pytest.raises(MissingCapability) as error:
        tree_shap(LogisticRegression().fit(x, y), x[:3])
    assert "TreeSHAP walks trees" in one_line(error)
    frame = _applicants(30, 1)
    forest = RandomForestClassifier(n_estimators=2).fit(frame[["income", "debt"]], frame["job"])
    with pytest.raises(BadInput) as error:
        tree_shap(forest, frame)
    assert "x has column(s) 'job' that the model was not fit on" in one_line(error)
