"""Reason codes: the decision, its score and the features that pushed the model to it, row by row."""

import numpy as np
import pandas as pd
import pytest
from errors_support import one_line
from sklearn.compose import make_column_transformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

import leanlens as ll
from leanlens.errors import BadInput, BadOption, MissingCapability
from leanlens.insight import credit_applications, tree_shap
from leanlens.insight.credit import TARGET, risk


@pytest.fixture(scope="module")
def applicants():
    frame = credit_applications(600, seed=0)
    return frame.drop(columns=TARGET), frame[TARGET]


def test_the_credit_set_is_deterministic_and_follows_its_documented_risk(applicants):
    features, defaulted = applicants
    again = credit_applications(600, seed=0)
    pd.testing.assert_frame_equal(again.drop(columns=TARGET), features)
    assert not credit_applications(600, seed=1).equals(again)
    assert list(features.columns) == ["income", "debt_ratio", "history_years", "late_payments", "loan_amount",
                                      "employment"]
    # defaults rise with the documented score: the riskiest third defaults far more than the safest
    order = np.argsort(risk(features))
    assert defaulted.to_numpy()[order[-200:]].mean() > 3 * defaulted.to_numpy()[order[:200]].mean()


def test_refusals_driven_by_one_feature_name_it_first(applicants):
    features, _ = applicants
    numeric = features.drop(columns="employment")
    refused = (numeric["debt_ratio"] > 0.45).astype(int)  # the lender's rule: debt alone decides
    model = GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0).fit(numeric, refused)
    codes = ll.reasons(model, numeric, top=3)
    refusals = codes.decisions == 1
    assert codes.method == "treeshap" and codes.space == "log-odds" and refusals.sum() > 100
    first = np.array(codes.feature_names)[codes.features[refusals, 0]]
    assert (first == "debt_ratio").mean() >= 0.95
    assert codes.summary()[1][0][0] == "debt_ratio"


def test_reason_contributions_are_the_decided_class_shapley_values_largest_first(applicants):
    features, defaulted = applicants
    numeric = features.drop(columns="employment")
    model = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(numeric, defaulted)
    codes = ll.reasons(model, numeric.iloc[:40], top=5)
    decided = model.predict_proba(numeric.iloc[:40]).argmax(1)
    exact = tree_shap(model, numeric.iloc[:40], target=decided)
    rows = np.arange(40)[:, None]
    np.testing.assert_allclose(codes.contributions, exact.values[rows, codes.features])
    assert np.all(np.diff(codes.contributions, axis=1) <= 0)  # most supporting first
    np.testing.assert_array_equal(codes.decisions, model.classes_[decided])
    np.testing.assert_allclose(codes.scores, model.predict_proba(numeric.iloc[:40]).max(1))
    assert codes.values[0, 0] == numeric.iloc[0][codes.feature_names[codes.features[0, 0]]]


def test_a_pipeline_with_text_columns_gets_kernelshap_reasons_with_category_values(applicants):
    features, defaulted = applicants
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), ["employment"]), remainder=StandardScaler()),
                         LogisticRegression(max_iter=500)).fit(features, defaulted)
    unemployed = features.index[features["employment"] == "unemployed"][:6]
    employed = features.index[features["employment"] == "employed"][:14]
    rows = features.loc[np.concatenate([unemployed, employed])]
    codes = ll.reasons(pipe, rows, top=2, background=features.iloc[:10])
    assert codes.method == "kernelshap" and codes.space == "probability"
    job = codes.feature_names.index("employment")
    for i in range(len(rows)):
        for j, value in zip(codes.features[i], codes.values[i]):
            assert value == rows.iloc[i, j]  # the applicant's own value, a category by name
            assert isinstance(value, int) == (codes.feature_names[j] == "late_payments")  # a count stays whole
    cites_job = (codes.features == job).any(1)
    # being unemployed weighs toward default: every unemployed applicant predicted to default cites it
    refused_unemployed = (codes.decisions[:6] == 1)
    assert refused_unemployed.any() and cites_job[:6][refused_unemployed].all()
    record = codes.records()[0]
    assert set(record) == {"row", "decision", "score", "reasons"} and len(record["reasons"]) == 2
    assert list(codes.columns())[:6] == ["row", "decision", "score", "reason_1", "value_1", "contribution_1"]


def test_reason_mistakes_are_one_line(applicants):
    features, defaulted = applicants
    numeric = features.drop(columns="employment")
    model = GradientBoostingClassifier(n_estimators=5, max_depth=2).fit(numeric, defaulted)
    cases = [
        (BadOption, "top=0", lambda: ll.reasons(model, numeric, top=0)),
        (BadInput, "x lacks the column(s) 'income'", lambda: ll.reasons(model, numeric.drop(columns="income"))),
        (MissingCapability, "LinearSVC has no predict_proba",
         lambda: ll.reasons(LinearSVC().fit(numeric, defaulted), numeric)),
        (BadInput, "not numbers", lambda: ll.reasons(lambda x: x, np.array([["a", "b"]]))),
        (BadInput, "has a missing or infinite value",
         lambda: ll.reasons(model, numeric.assign(income=np.nan))),
    ]
    for kind, message, call in cases:
        with pytest.raises(kind) as error:
            call()
        assert message in one_line(error)
