"""Insight's tables are coded by the models/ codec that ll.explain uses: one coding, checked in one place."""

import numpy as np
import pandas as pd
import pytest
from errors_support import one_line

import leanlens as ll
from leanlens.errors import BadInput
from leanlens.insight import tree_shap
from leanlens.insight.kernel import kernel_shap
from leanlens.insight.scorer import prepare
from leanlens.insight.tabular import as_table, with_background
from leanlens.models.tables import TableCodec


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"debt": [0.2, 0.7, 0.5, 0.9], "late": np.array([0, 3, 1, 2], dtype=np.int64),
                         "job": ["part", "full", "none", "full"], "owner": [True, True, False, True],
                         "grade": pd.Categorical(["b", "a", "b", "c"], categories=["c", "b", "a"])})


def test_the_codes_round_trip_to_the_users_dtypes_and_categories_are_sorted_whatever_the_row_order():
    frame = _frame()
    table = as_table(frame)
    assert isinstance(table.codec, TableCodec)
    assert table.categories == (None, None, ("full", "none", "part"), (False, True), ("c", "b", "a"))
    assert as_table(frame.iloc[::-1]).categories == table.categories
    np.testing.assert_array_equal(table.matrix[:, 2:], [[2, 1, 1], [0, 1, 2], [1, 0, 1], [0, 1, 0]])
    pd.testing.assert_frame_equal(table.decode(table.matrix), frame)
    assert [table.value(1, j) for j in range(5)] == [0.7, 3, "full", True, "a"]
    assert isinstance(table.value(1, 1), int) and table.text_columns == ("job", "grade")


def test_a_bool_column_codes_as_its_own_number_even_when_one_value_is_seen():
    frame = pd.DataFrame({"owner": [True, True], "x": [1.0, 2.0]})
    np.testing.assert_array_equal(as_table(frame).matrix[:, 0], [1.0, 1.0])


def test_an_integer_column_given_fractions_is_not_rounded_when_decoded():
    table = as_table(_frame())
    moved = table.matrix.copy()
    moved[:, 1] += 0.25  # a surrogate's Gaussian neighbour of a count
    decoded = table.decode(moved)
    np.testing.assert_array_equal(decoded["late"], [0.25, 3.25, 1.25, 2.25])
    assert table.decode(table.matrix)["late"].dtype == np.int64


def test_the_background_shares_the_datas_codes_and_brings_its_own_categories():
    frame = _frame()
    background = pd.DataFrame({"debt": [0.1], "late": [5], "job": ["retired"], "owner": [False],
                               "grade": pd.Categorical(["a"], categories=["c", "b", "a"])})
    table, coded = with_background(frame, background[list(reversed(background.columns))])
    assert table.categories[2] == ("full", "none", "part", "retired") == coded.categories[2]
    np.testing.assert_array_equal(coded.matrix, [[0.1, 5, 3, 0, 2]])
    pd.testing.assert_frame_equal(coded.decode(coded.matrix), background)


@pytest.mark.parametrize("x, message", [
    (_frame().assign(debt=[0.2, np.inf, 0.5, 0.9]), "x has a missing or infinite value in column 'debt' (row 1)"),
    (_frame().assign(job=["part", None, "none", "full"]), "x has a missing or infinite value in column 'job' (row 1)"),
    (np.array([[1.0, 2.0], [3.0, np.nan]]), "x has a missing or infinite value in column 'x1' (row 1)"),
    (_frame().iloc[:0], "x must be a non-empty (rows, features) table, got shape (0, 5)"),
    (np.zeros(3), "x must be a non-empty (rows, features) table, got shape (3,)"),
    (_frame().assign(when=pd.Timestamp("2026-01-01")), "column 'when' has dtype datetime64"),
])
def test_tables_that_cannot_be_coded_are_refused_in_one_line(x, message):
    with pytest.raises(BadInput) as error:
        as_table(x)
    assert message in one_line(error)


def test_a_background_with_other_columns_is_refused_by_name():
    with pytest.raises(BadInput) as error:
        with_background(_frame(), _frame().drop(columns="late"))
    assert "background lacks the column(s) 'late'" in one_line(error)


def _model(rows: pd.DataFrame) -> np.ndarray:
    """A score that reads every raw column: numbers, categories by name and bools."""
    z = 2 * rows["debt"] + 0.3 * rows["late"] + (rows["job"] == "none") - 0.5 * rows["owner"] + (rows["grade"] == "a")
    p = 1 / (1 + np.exp(-z.to_numpy(float)))
    return np.stack([1 - p, p], axis=1)


def test_insight_kernelshap_is_ll_explain_with_the_same_background():
    frame = _frame()
    background = frame.iloc[[0, 2]]
    scorer, table, coded = prepare(_model, frame, background)
    ours = kernel_shap(scorer, table, coded, target=1)
    theirs = ll.explain(_model, frame, "kernelshap", target=1, background=background)
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-6)
    np.testing.assert_allclose(ours.base_values, _model(background)[:, 1].mean(), atol=1e-6)
    np.testing.assert_allclose(ours.output, _model(frame)[:, 1], atol=1e-6)


def test_treeshap_walks_a_forest_fit_on_a_bool_column():
    from sklearn.ensemble import RandomForestClassifier

    frame = _frame()[["debt", "late", "owner"]]
    forest = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(frame, [0, 1, 0, 1])
    result = tree_shap(forest, frame, target=1)
    np.testing.assert_allclose(result.output, forest.predict_proba(frame)[:, 1], atol=1e-6)
