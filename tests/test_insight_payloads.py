"""Insight results as attachment payloads: every figure the result holds, as plain JSON values."""

import json

import numpy as np
import pytest
from errors_support import one_line
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.tree import DecisionTreeClassifier

import leanlens as ll
from leanlens.errors import BadInput
from leanlens.insight import (
    credit_applications,
    global_surrogate,
    permutation_importance,
    to_payload,
)
from leanlens.insight.credit import TARGET
from leanlens.insight.payloads import EXAMPLE_ROWS


@pytest.fixture(scope="module")
def credit():
    frame = credit_applications(300, seed=3).drop(columns="employment")
    features, y = frame.drop(columns=TARGET), frame[TARGET]
    return features, y, GradientBoostingClassifier(n_estimators=15, max_depth=2, random_state=0).fit(features, y)


def _round_trip(kind_and_payload):
    kind, payload = kind_and_payload
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload  # plain JSON, nothing lost
    return kind, payload


def test_importance_payload_holds_the_means_spreads_and_intervals(credit):
    features, y, model = credit
    result = permutation_importance(model, features, y, n_repeats=3, random_state=0)
    kind, payload = _round_trip(to_payload(result))
    assert kind == "importance" and payload["feature_names"] == list(features.columns)
    np.testing.assert_array_equal(payload["mean"], result.importances_mean)
    np.testing.assert_array_equal(payload["std"], result.importances_std)
    np.testing.assert_array_equal(payload["ci_low"], result.ci_low)
    np.testing.assert_array_equal(payload["ci_high"], result.ci_high)
    assert (payload["method"], payload["repeats"], payload["confidence"]) == ("permutation", 3, 0.95)
    assert payload["baseline_score"] == result.baseline_score


def test_surrogate_payload_holds_its_fidelities_size_and_rules(credit):
    features, y, _ = credit
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(features, y)
    result = global_surrogate(tree, features)
    kind, payload = _round_trip(to_payload(result))
    assert kind == "surrogate" and payload["rules"] == result.rules() and "debt_ratio <= " in payload["rules"]
    assert (payload["fidelity"], payload["train_fidelity"]) == (result.fidelity, result.train_fidelity) > (0.9, 0.9)
    assert payload["depth"] == result.tree.get_depth() <= 3 and payload["leaves"] == result.tree.get_n_leaves()
    assert payload["classes"] == ["0", "1"]


def test_reasons_payload_counts_every_row_and_keeps_the_first_rows(credit):
    features, _, model = credit
    codes = ll.reasons(model, features, top=3)
    kind, payload = _round_trip(to_payload(codes))
    assert kind == "reasons" and payload["rows"] == len(features) and payload["top"] == 3
    decided = np.asarray(codes.decisions)
    assert payload["decisions"] == {str(d): int((decided == d).sum()) for d in np.unique(decided)}
    assert payload["summary"] == {str(d): [list(entry) for entry in cited] for d, cited in codes.summary().items()}
    assert payload["examples"] == codes.records()[:EXAMPLE_ROWS]


def test_a_result_without_an_attachment_form_is_refused(credit):
    with pytest.raises(BadInput) as error:
        to_payload(credit[0])
    assert "a DataFrame has no attachment form" in one_line(error)
